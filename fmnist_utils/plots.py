"""Figures for the notebooks. Each function takes plain arrays and returns a matplotlib Figure.

They work headless (matplotlib picks its Agg backend when there is no screen); :func:`save_figure` keeps a
figure of a real run as a PNG under ``images/``, where README and docs can link it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter
from pandas.api.types import is_numeric_dtype

from fmnist_utils.data import CLASS_NAMES
from fmnist_utils.environment import Run
from fmnist_utils.evaluation import confusion_matrix
from fmnist_utils.results import project_root

CORRECT_COLOUR = "tab:blue"
WRONG_COLOUR = "tab:red"


def _as_images(x: np.ndarray | Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """(N, 28, 28) or (N, 28, 28, 1) -> (N, 28, 28); a list of images of different sizes stays a list, each
    (H, W, 1) image made (H, W)."""
    if isinstance(x, list | tuple):
        return [image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image for image in map(np.asarray, x)]
    x = np.asarray(x)
    return x[..., 0] if x.ndim == 4 and x.shape[-1] == 1 else x


def plot_image_grid(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    cmap: str = "binary",
    size: float = 1.3,
    title_colours: Sequence[str] | None = None,
    centred: bool = False,
) -> Figure:
    """A grid of grey images (N, H, W) or (N, H, W, 1), with optional titles, e.g. filters or augmentations.

    ``images`` may also be a list of images of different sizes; RGB images (H, W, 3) are shown in colour.

    With ``centred``, for signed values such as filter weights: one diverging colour map (``cmap``, e.g. "RdBu")
    for all images, with limits -m and +m, m the largest absolute value, so that zero is the map's middle colour,
    and a colour bar.
    """
    images = _as_images(images)
    limit = max(float(np.abs(image).max()) for image in images) or 1.0
    limits = {"vmin": -limit, "vmax": limit} if centred else {}
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(ncols * size, nrows * size * (1.25 if titles else 1)),
        squeeze=False,
        layout="constrained" if centred else None,
    )
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(images):
            shown = ax.imshow(images[index], cmap=cmap, **limits)
            if titles is not None:
                colour = title_colours[index] if title_colours is not None else "black"
                ax.set_title(titles[index], fontsize=8, color=colour)
    if centred:
        fig.colorbar(shown, ax=axes, shrink=0.9)
    else:
        fig.tight_layout()
    return fig


def plot_samples(
    x: np.ndarray, y: np.ndarray, n: int = 25, seed: int = 0, class_names: Sequence[str] = CLASS_NAMES
) -> Figure:
    """``n`` random images (N, 28, 28) with their class names."""
    index = np.random.default_rng(seed).choice(len(y), size=n, replace=False)
    return plot_image_grid(x[index], [class_names[label] for label in y[index]], ncols=int(np.ceil(np.sqrt(n))))


def plot_history(histories: Mapping[str, Mapping[str, Sequence[float]]], log_loss: bool = False) -> Figure:
    """Loss and accuracy per epoch, training (dashed) vs validation (solid), for one or more runs.

    Args:
        histories: ``{label: keras_history.history}``; each history holds ``loss``, ``accuracy``,
            ``val_loss`` and ``val_accuracy`` lists, one value per epoch.
        log_loss: draw the loss on a logarithmic axis labelled with plain numbers (1, 10, 100), for
            runs whose losses span orders of magnitude.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for (label, history), colour in zip(histories.items(), sns.color_palette("tab10")):
        epochs = np.arange(1, len(history["loss"]) + 1)
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, history[metric], "--", color=colour, label=f"{label}, training")
            ax.plot(epochs, history[f"val_{metric}"], "-", color=colour, label=f"{label}, validation")
    if log_loss:
        axes[0].set_yscale("log")
        axes[0].yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes[0].yaxis.set_minor_formatter(NullFormatter())
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no tick at 2.5
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> Figure:
    """Confusion matrix as counts: row = true class, column = predicted class.

    One panel: with Fashion-MNIST's balanced test set (1,000 images per class) a row-normalised copy would be the
    same numbers divided by 1,000, and per-class recall is in :func:`fmnist_utils.evaluation.classification_report`.
    """
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    fig, ax = plt.subplots(figsize=(7.5, 6))
    sns.heatmap(
        counts,
        annot=True,
        fmt="d",
        cmap="Blues",
        cbar=False,
        ax=ax,
        annot_kws={"fontsize": 8},
        xticklabels=class_names,
        yticklabels=class_names,
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix ({len(y_true):,} test images)")
    fig.tight_layout()
    return fig


def plot_misclassified(
    x: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, n: int = 24, class_names: Sequence[str] = CLASS_NAMES
) -> Figure:
    """The ``n`` most confident mistakes: image, true class, predicted class and its probability."""
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != y_true)
    wrong = wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][:n]
    titles = [
        f"true: {class_names[y_true[i]]}\npred: {class_names[predictions[i]]} {probabilities[i, predictions[i]]:.1%}"
        for i in wrong
    ]
    return plot_image_grid(x[wrong], titles, ncols=8, size=1.6, title_colours=[WRONG_COLOUR] * len(wrong))


def plot_prediction(
    image: np.ndarray, probabilities: np.ndarray, true_label: int, class_names: Sequence[str] = CLASS_NAMES
) -> Figure:
    """One image (28, 28[, 1]) beside its class probabilities (10,); the predicted bar is blue if right, else red."""
    predicted = int(np.argmax(probabilities))
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), gridspec_kw={"width_ratios": [1, 2]})
    left.imshow(_as_images(image[np.newaxis])[0], cmap="binary")
    left.axis("off")
    left.set_title(f"true: {class_names[true_label]}")
    bars = right.barh(list(class_names), probabilities, color="lightgrey")
    bars[predicted].set_color(CORRECT_COLOUR if predicted == true_label else WRONG_COLOUR)
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("probability")
    right.set_title(f"predicted: {class_names[predicted]} ({probabilities[predicted]:.1%})")
    fig.tight_layout()
    return fig


def _draw_preact_block(ax: Axes, title: str, projection: bool) -> None:
    """One pre-activation basic block on ``ax``, read from top to bottom, with its shortcut on the right."""

    def box(x: float, y: float, text: str, colour: str, width: float = 2.6, height: float = 0.56, style="-"):
        corner = (x - width / 2, y - height / 2)
        rounded = "round,pad=0,rounding_size=0.12"
        ax.add_patch(FancyBboxPatch(corner, width, height, boxstyle=rounded, fc=colour, ec="black", ls=style))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def path(points: list[tuple[float, float]], colour: str = "black") -> None:  # arrow head at the end
        xs, ys = zip(*points)
        ax.plot(xs[:-1], ys[:-1], color=colour, lw=1.5)
        arrow = dict(arrowstyle="-|>", color=colour, lw=1.5, shrinkA=0, shrinkB=0)
        ax.annotate("", xy=points[-1], xytext=points[-2], arrowprops=arrow)

    grey, blue, skip = "#eeeeee", "#cfe2f3", "tab:red"
    box(0, 7, "input x: H×W×C", "white")
    box(0, 6, "BN → ReLU", grey)
    box(0, 5, "conv 3×3 (C'), stride s" if projection else "conv 3×3 (C)", blue)
    box(0, 4, "BN → ReLU", grey)
    box(0, 3, "dropout (full profile)", "white", style="--")
    box(0, 2, "conv 3×3 (C')" if projection else "conv 3×3 (C)", blue)
    ax.add_patch(Circle((0, 1), 0.25, fc="#fde2c4", ec="black"))
    ax.text(0, 1, "+", ha="center", va="center", fontsize=13)
    box(0, 0, "output: H/s×W/s×C'" if projection else "output: H×W×C", "white")
    for upper in (7, 6, 5, 4, 3):
        path([(0, upper - 0.28), (0, upper - 1 + 0.28)])
    path([(0, 2 - 0.28), (0, 1.25)])
    path([(0, 0.75), (0, 0.28)])
    if projection:
        box(2.2, 3.5, "conv 1×1 (C')\nstride s", blue, width=1.4, height=0.9)
        path([(1.3, 6), (2.2, 6), (2.2, 3.95)], skip)
        path([(2.2, 3.05), (2.2, 1), (0.25, 1)], skip)
    else:
        path([(1.3, 7), (2.2, 7), (2.2, 1), (0.25, 1)], skip)
        ax.text(2.35, 4, "identity", rotation=90, va="center", color=skip, fontsize=9)
    ax.set(xlim=(-1.5, 3.0), ylim=(-0.5, 7.5), aspect="equal")
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def plot_preact_block() -> Figure:
    """The pre-activation basic block of a Wide ResNet (notebook 04), as built by ``wide_resnet.preact_block``.

    Two panels: the block with an identity shortcut (most blocks) and with a 1×1 projection shortcut that
    reads the pre-activated input (the first block of a group, where C channels become C' and the stride s
    halves the image).
    """
    fig, axes = plt.subplots(1, 2, figsize=(8, 6))
    _draw_preact_block(axes[0], "identity shortcut\n(most blocks)", projection=False)
    _draw_preact_block(axes[1], "projection shortcut\n(first block of a group: C → C', stride s)", projection=True)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, name: str, run: Run) -> Path | None:
    """Save ``fig`` as ``images/<name>.png`` in the repository root and return the path.

    Figures are saved under ``images/`` so README and docs can link them (``![...](images/<name>.png)``);
    a new run of the notebook overwrites them. Figures of a smoke run or a dry run are not saved (None is returned):
    only figures of quick or full runs are committed.

    Args:
        fig: the figure to save, at 90 dpi, cropped to its content.
        name: file name without extension, e.g. ``"04_wrn_confusion_matrix"``.
        run: from :func:`fmnist_utils.environment.start_run`; its profile decides whether to save.
    """
    if not run.profile.records:
        return None
    path = project_root() / "images" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def plot_parallel_coordinates(
    table: pd.DataFrame,
    columns: Sequence[str],
    score: str,
    log_scale: Sequence[str] = (),
    orders: Mapping[str, Sequence[str]] | None = None,
) -> Figure:
    """Parallel coordinates of hyperparameter trials, the picture of TensorBoard's HParams dashboard.

    One vertical axis per column of ``columns`` and one for ``score``; each trial (row of ``table``) is a line
    across them, coloured by its score, the best trial drawn thickest on top. Numeric axes run from their
    minimum (bottom) to maximum (top), logarithmically for the columns in ``log_scale``; text columns get
    one evenly spaced position per value, labelled, bottom to top in the order ``orders`` gives for that column
    (e.g. ``{"augmentation": list(tuning.AUGMENTATIONS)}``, weakest first), else alphabetically.

    Args:
        table: one row per trial, e.g. from :func:`fmnist_utils.tuning.trials_table`; rows without a score
            are left out.
        columns: hyperparameter columns, in the order of the axes.
        score: the column that colours the lines, e.g. ``"val_accuracy"``.
        log_scale: columns of positive numbers to place on a log scale.
        orders: for text columns, the order of their values along the axis (values not listed go last).
    """
    table = table.dropna(subset=[score]).sort_values(score)
    if table.empty:
        raise ValueError(f"No trial has a {score!r} yet: nothing to draw.")
    axes_names = [*columns, score]
    positions = np.empty((len(table), len(axes_names)))
    labels: list[tuple[list[float], list[str]]] = []
    for index, name in enumerate(axes_names):
        values = table[name]
        if not is_numeric_dtype(values):
            order = list((orders or {}).get(name, ()))
            present = set(values.unique())
            categories = [c for c in order if c in present] + sorted(present - set(order), key=str)
            codes = values.map({category: i for i, category in enumerate(categories)}).to_numpy(float)
            spread = max(len(categories) - 1, 1)
            positions[:, index] = codes / spread
            labels.append(([i / spread for i in range(len(categories))], [str(c) for c in categories]))
            continue
        numbers = values.to_numpy(float)
        scale = np.log10 if name in log_scale else (lambda v: v)
        low, high = scale(numbers.min()), scale(numbers.max())
        spread = (high - low) or 1.0
        positions[:, index] = (scale(numbers) - low) / spread
        ticks = np.linspace(0, 1, 3) if high > low else np.array([0.0])
        real = 10 ** (low + ticks * spread) if name in log_scale else low + ticks * spread
        labels.append((list(ticks), [f"{value:.3g}" for value in real]))
    fig, ax = plt.subplots(figsize=(2 * len(axes_names) + 1, 4))
    scores = table[score].to_numpy(float)
    colours = plt.get_cmap("viridis")((scores - scores.min()) / ((scores.max() - scores.min()) or 1.0))
    for row, colour in zip(positions, colours):
        ax.plot(range(len(axes_names)), row, color=colour, alpha=0.8, linewidth=1.2)
    ax.plot(range(len(axes_names)), positions[-1], color=colours[-1], linewidth=3, label="best trial")
    for index, (ticks, texts) in enumerate(labels):
        ax.axvline(index, color="grey", linewidth=0.8)
        for tick, text in zip(ticks, texts):
            ax.annotate(text, (index, tick), xytext=(4, 0), textcoords="offset points", fontsize=8, va="center")
    ax.set_xticks(range(len(axes_names)), [name.replace("_", " ") for name in axes_names])
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, len(axes_names) - 0.6)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig
