"""Rebuild ``data/real-photos/``, the real phone photos notebook 08 uses, from a copy of the clothing dataset.

The source is Alexey Grigorev's "clothing dataset (subset)" (CC0), https://github.com/alexeygrigorev/clothing-dataset-small:
a folder with ``train/``, ``validation/`` and ``test/``, one sub-folder per label, JPEG files. This script takes
``--per-class`` photos of each of the ten labels notebook 08 uses (all of them where a label has fewer), drawn with a
fixed seed from ``train/`` and ``validation/`` only, turns them upright (EXIF orientation), shrinks them to at most
``--size`` pixels and writes them with ``labels.csv``. The source's ``test/`` folder is left out unless
``--include-test`` is given: it is the independent check of notebook 08's model, and a photo drawn from it for
fine-tuning would make that check meaningless. The committed set was made with the defaults:

    git clone https://github.com/alexeygrigorev/clothing-dataset-small /tmp/clothing
    python scripts/make_real_photos.py /tmp/clothing
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps

LABELS = ("t-shirt", "pants", "longsleeve", "dress", "outwear", "shirt", "shoes", "hat", "shorts", "skirt")
OUT = Path(__file__).resolve().parents[1] / "data" / "real-photos"


def source_photos(source: Path, splits: tuple[str, ...] = ("train", "validation")) -> dict[str, list[Path]]:
    """Every JPEG of the source under ``<split>/<label>/`` for these splits, per label, sorted by path."""
    photos: dict[str, list[Path]] = {label: [] for label in LABELS}
    for split in splits:
        for label in LABELS:
            photos[label] += sorted((source / split / label).glob("*.jpg"))
    if not any(photos.values()):
        sys.exit(f"{source} holds no <split>/<label>/*.jpg photos; give the folder of the clothing dataset (subset).")
    return photos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder of the clothing dataset (subset), with train/ validation/")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    parser.add_argument("--per-class", type=int, default=250, help="photos per label, at most (default 250)")
    parser.add_argument("--size", type=int, default=128, help="longest edge in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    parser.add_argument(
        "--include-test",
        action="store_true",
        help="also draw from the source's test/ folder (then it can no longer check a model trained on these photos)",
    )
    args = parser.parse_args(argv)

    splits = ("train", "validation", "test") if args.include_test else ("train", "validation")
    if args.include_test:
        print(
            "warning: drawing from the source's test/ folder too; it is no longer an independent check", file=sys.stderr
        )
    photos = source_photos(args.source, splits)
    rng = random.Random(args.seed)
    if args.out.exists():
        if not (args.out / "labels.csv").is_file():
            sys.exit(f"{args.out} exists and is not a photo subset (no labels.csv): choose another --out")
        shutil.rmtree(args.out)
    rows = []
    for label in LABELS:
        chosen = rng.sample(photos[label], min(args.per_class, len(photos[label])))
        (args.out / label).mkdir(parents=True)
        for path in sorted(chosen):
            with Image.open(path) as image:
                image = ImageOps.exif_transpose(image).convert("RGB")
                image.thumbnail((args.size, args.size), Image.Resampling.LANCZOS)
                relative = f"{label}/{path.name}"
                image.save(args.out / relative, quality=90)
                rows.append({"file": relative, "label": label, "source_split": path.parent.parent.name})
        print(f"{label:10s} {len(chosen):4d} photos")
    with open(args.out / "labels.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["file", "label", "source_split"])
        writer.writeheader()
        writer.writerows(rows)
    licence = args.source / "LICENSE"
    if licence.exists():
        shutil.copy(licence, args.out / "LICENSE")
    print(f"{len(rows)} photos in {args.out}")


if __name__ == "__main__":
    main()
