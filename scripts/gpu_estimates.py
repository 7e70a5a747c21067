"""Print README's table of estimated GPU training times for the full and best profiles.

Each notebook's trainings in a profile, as its cells set them, estimated by :func:`fmnist_utils.estimates.gpu_estimate`
for each GPU class: FLOPs at an assumed effective throughput plus a per-step host overhead. Estimates, not
measurements: compilation, batch-norm recomputation and evaluation passes are not counted.
"""

from __future__ import annotations

import sys

from fmnist_utils.environment import import_keras_quietly

TRAIN, VAL = 55_000, 5_000


def trainings(profile: str) -> dict[str, list[tuple[object, int, int, int]]]:
    """Notebook -> [(model, epochs, batch size, training images)] of its trainings in ``profile``."""
    from fmnist_utils import capsules, models
    from fmnist_utils.wide_resnet import wide_resnet

    wrn = (16, 8) if profile == "best" else (16, 4)
    wrn_epochs = 80 if profile == "best" else 50
    demo = wide_resnet(40, 1)
    return {
        "01 MLP": [(models.mlp(), 60, 125, TRAIN)],
        "02 LeNet": [(models.lenet((32, 64), dropout=0.3), 40, 125, TRAIN)],
        "03 modern CNN (two trainings)": [(models.modern_cnn((32, 64, 128)), 50, 125, TRAIN)] * 2,
        f"04 WRN-{wrn[0]}-{wrn[1]} (and the plain vs residual demo)": [
            (wide_resnet(*wrn), wrn_epochs, 250, TRAIN),
            (demo, 10, 250, TRAIN),
            (demo, 10, 250, TRAIN),
        ],
        "05 CapsNet, paper": [(capsules.capsule_network()[0], 50, 100, TRAIN)],
        "07 search (widest trials) and final training": [
            (models.modern_cnn((48, 96, 192)), 4 * 12, 125, 20_000),
            (models.modern_cnn((48, 96, 192)), 6 * 4, 125, TRAIN),
            (models.modern_cnn((32, 64, 128)), 50, 125, TRAIN),
        ],
    }


def main() -> int:
    import_keras_quietly()
    from fmnist_utils.estimates import GPU_CLASSES, gpu_estimate, minutes_range

    gpus = list(GPU_CLASSES)
    print("| Profile | Notebook | " + " | ".join(f"{gpu} (estimate)" for gpu in gpus) + " |")
    print("|---|---|" + "---:|" * len(gpus))
    for profile in ("full", "best"):
        for notebook, runs in trainings(profile).items():
            if profile == "best" and not notebook.startswith("04"):
                continue  # the other notebooks run their full recipe in best
            cells = []
            for gpu in gpus:
                parts = [
                    gpu_estimate(gpu, model, epochs=epochs, batch_size=batch, train_images=images, val_images=VAL)
                    for model, epochs, batch, images in runs
                ]
                low, high = sum(p.low_minutes for p in parts), sum(p.high_minutes for p in parts)
                cells.append(minutes_range(low, high))
            print(f"| `{profile}` | {notebook} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
