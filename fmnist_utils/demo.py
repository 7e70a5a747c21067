""" "Try it on your own photo": a Gradio app for notebook 08's pipeline and model (:mod:`fmnist_utils.photos`).

``python -m fmnist_utils.demo [--model PATH] [--port N]`` (``make demo``) serves it on 127.0.0.1 only, so nobody
else on the network can reach it; to use it from another machine, forward the port over SSH
(``ssh -L 7860:127.0.0.1:7860 you@server``, then open http://127.0.0.1:7860 there). It works offline: no share
link, no analytics, no fonts or scripts from a CDN. Notebook 08 shows it inline.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: it reads this at import

with warnings.catch_warnings():
    # gradio imports tqdm.auto, which warns in a notebook without ipywidgets; the app never shows its bars.
    warnings.filterwarnings("ignore", message="IProgress not found")
    import gradio as gr
import numpy as np
from PIL import Image

from fmnist_utils import photos

HOST = "127.0.0.1"
DEFAULT_PORT = 7860
OOD_MESSAGE = "This does not look like any Fashion-MNIST class."
EXAMPLE_LABELS = ("t-shirt", "pants", "dress", "shoes", "hat")
EXAMPLE_SEED = 42  # notebook 08's SEED: its split of the committed photos
# System fonts only: Gradio's default theme would fetch its fonts from Google Fonts.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def photo_input(**options: Any) -> gr.Image:
    """A ``gr.Image`` (upload, webcam, clipboard) that hands the app any uploaded file as a path, so that
    :func:`fmnist_utils.photos.load_photo` can say what is wrong with a bad one: Gradio's own decoding would stop
    with a bare "Error" before the app sees the file. (Wrapped on the instance: a subclass of a Gradio component
    makes Gradio write a ``.pyi`` stub beside this module.)"""
    image = gr.Image(type="filepath", **options)
    decode = image.preprocess

    def preprocess(payload: Any) -> str | None:
        try:
            return decode(payload)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None if payload is None or payload.path is None else str(payload.path)

    image.preprocess = preprocess
    return image


def example_photos(folder: Path | None = None, seed: int = EXAMPLE_SEED) -> list[str]:
    """One committed photo of each of :data:`EXAMPLE_LABELS`, as paths: the first of the held-out test part of
    notebook 08's split (``seed`` is the notebook's), so the default model never trained on them."""
    photo_set = photos.load_photo_set(folder)
    test = photo_set.subset(photos.split_photos(photo_set.labels, seed)["test"])
    return [str(test.files[np.flatnonzero(test.labels == label)[0]]) for label in EXAMPLE_LABELS]


def predict(path: str | None, classifier: photos.PhotoClassifier) -> tuple[Any, Any, Any, Any, str]:
    """The app's answer for one photo file: (photo, item mask, the 28x28 image as the model sees it (enlarged),
    the probabilities of the decision rule's eight answers {name: p} (the shoe classes summed), verdict in
    Markdown, with any warning of the conversion). A bad file gives (None, None, None, None, the reason)."""
    if path is None:
        return None, None, None, None, "Upload a photo, take one with the webcam or paste one."
    name = Path(path).name
    try:
        conversion = photos.to_fashion_mnist(photos.load_photo(path, name=name), name=name)
    except photos.PhotoError as error:
        return None, None, None, None, f"**Could not use this file.** {error}"
    except Exception as error:  # noqa: BLE001 - the app must keep answering; the user gets the reason
        return None, None, None, None, f"**Could not use this file.** {name}: {type(error).__name__}: {error}"
    image, steps = conversion
    answer = photos.classify(image[None], classifier)[0]
    item = np.where(steps["mask"][..., None], steps["photo"], 255).astype(np.uint8)
    model_view = Image.fromarray(np.uint8(np.round(image * 255))).resize((168, 168), Image.Resampling.NEAREST)
    merged = photos.merge_shoes(answer.probabilities[None])[0]
    probabilities = {name: float(p) for name, p in zip(photos.ANSWER_NAMES, merged)}
    if answer.in_distribution:
        verdict = f"**{answer.answer}** ({answer.probability:.0%})"
    else:
        verdict = f"**{OOD_MESSAGE}** The closest answer is {answer.answer} ({answer.probability:.0%})."
    notes = "".join(f"  \n⚠ {warning}" for warning in conversion.warnings)
    keep = "" if classifier.ood.keep is None else f"; set to keep {classifier.ood.keep:.0%} of clothing photos"
    score = f"out-of-distribution score {answer.ood_score:.2f}, threshold {classifier.ood.threshold:.2f}{keep}"
    return steps["photo"], item, model_view, probabilities, f"{verdict}{notes}  \n<small>{score}</small>"


def build_app(model: photos.PhotoClassifier | str | Path | None = None) -> gr.Blocks:
    """The app: a photo input (upload, webcam, clipboard) and committed examples, answered as soon as a photo
    arrives; it shows the photo, the item GrabCut found, the 28x28 image the model sees, the probabilities of
    the eight answers (:data:`~fmnist_utils.photos.ANSWER_NAMES`) and the verdict.

    Args:
        model: a :class:`~fmnist_utils.photos.PhotoClassifier`, the path of a saved one, or None for the committed
            default model (``models/08_real_photos.keras``).
    """
    classifier = model if isinstance(model, photos.PhotoClassifier) else photos.load_classifier(model)
    with gr.Blocks(title="Fashion-MNIST on your own photo", analytics_enabled=False) as app:
        gr.Markdown(
            "# Fashion-MNIST on your own photo\n"
            "One item of clothing per photo, whole in the frame with a margin, on a plain background of another "
            "colour if you can. The photo is turned into a 28x28 image as Fashion-MNIST's were (notebook 08), then "
            "classified. The three shoe classes count as one answer, Shoes."
        )
        with gr.Row():
            with gr.Column():
                photo = photo_input(sources=["upload", "webcam", "clipboard"], label="Your photo", height=320)
                gr.Examples(example_photos(), inputs=photo, label="Or try a held-out photo (never trained on)")
            with gr.Column():
                verdict = gr.Markdown(elem_id="verdict")
                with gr.Row():
                    shown = gr.Image(label="Photo, upright", height=170, interactive=False)
                    item = gr.Image(label="Item (GrabCut)", height=170, interactive=False)
                    model_view = gr.Image(label="Model's 28x28", height=170, interactive=False)
                probabilities = gr.Label(num_top_classes=8, label="Probabilities", elem_id="probabilities")
        outputs = [shown, item, model_view, probabilities, verdict]

        def answer(path: str | None) -> tuple[Any, Any, Any, Any, str]:
            return predict(path, classifier)

        # one trigger: upload, webcam, paste or example; gradio_client calls it as "/classify"
        photo.change(answer, inputs=photo, outputs=outputs, api_name="classify")
    return app


def launch(app: gr.Blocks, port: int | None = None, host: str = HOST, **options: Any) -> gr.Blocks:
    """Serve ``app`` on ``host`` (default 127.0.0.1: this machine only) and ``port`` (None: the first free one from
    7860), with no share link, local fonts, and the committed photos readable by the app; ``options`` go to
    ``gr.Blocks.launch`` (e.g. ``inline=True, prevent_thread_lock=True`` in a notebook). Another ``host`` is a
    deliberate choice: ``"0.0.0.0"`` inside a Docker container whose port is published (docs/docker.md)."""
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        theme=THEME,
        allowed_paths=[str(photos.photo_folder())],
        footer_links=["gradio"],
        **options,
    )
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m fmnist_utils.demo [--model PATH] [--port N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m fmnist_utils.demo",
        description="Serve the 'try it on your own photo' app on http://127.0.0.1 (Ctrl+C stops it).",
        epilog="It listens on 127.0.0.1 only. From another machine: ssh -L 7860:127.0.0.1:7860 you@this-machine.",
    )
    parser.add_argument("--model", type=Path, help=f"model saved by notebook 08 (default {photos.DEFAULT_MODEL_NAME})")
    parser.add_argument("--port", type=int, help=f"port (default: the first free one from {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        app = build_app(args.model)
    except FileNotFoundError as error:
        parser.error(str(error))
    launch(app, args.port)


if __name__ == "__main__":
    main()
