"""Rebuild ``data/real-photos/``, the real phone photos notebook 08 uses, from a copy of the clothing dataset.

The source is Alexey Grigorev's "clothing dataset (subset)" (CC0), https://github.com/alexeygrigorev/clothing-dataset-small:
a folder with ``train/``, ``validation/`` (and optionally ``test/``), one sub-folder per label, JPEG files. This
script takes ``--per-class`` photos of each of the ten labels notebook 08 uses, drawn with a fixed seed from all
the splits it finds, turns them upright (EXIF orientation), shrinks them to at most ``--size`` pixels and writes
them with ``labels.csv``. Readers who want more photos run it with a larger ``--per-class``:

    git clone https://github.com/alexeygrigorev/clothing-dataset-small /tmp/clothing
    python scripts/make_real_photos.py /tmp/clothing --per-class 200
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


def source_photos(source: Path) -> dict[str, list[Path]]:
    """Every JPEG of the source under ``<split>/<label>/``, per label, sorted by path."""
    photos: dict[str, list[Path]] = {label: [] for label in LABELS}
    for split in ("train", "validation", "test"):
        for label in LABELS:
            photos[label] += sorted((source / split / label).glob("*.jpg"))
    if not any(photos.values()):
        sys.exit(f"{source} holds no <split>/<label>/*.jpg photos; give the folder of the clothing dataset (subset).")
    return photos


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder of the clothing dataset (subset), with train/ validation/")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    parser.add_argument("--per-class", type=int, default=100, help="photos per label (default 100)")
    parser.add_argument("--size", type=int, default=128, help="longest edge in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    args = parser.parse_args(argv)

    photos = source_photos(args.source)
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
