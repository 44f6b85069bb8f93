"""Load a subnet written by `supernet export` into a plain PyTorch module and evaluate it.

    python3 scripts/export_check.py subnet.safetensors [--data data/mnist]

The module is built from the file's metadata alone and loaded with `strict=True`; it prints
the test accuracy, correct count and mean loss as JSON, to compare with
`supernet eval --weights subnet.safetensors --json`. Needs torch, safetensors and numpy.
"""

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


class Subnet(nn.Module):
    """Per block a conv (none for `skip`), for Concat a 1x1 mix, then ReLU and 2x2 max-pool;
    then fc1, ReLU, fc2."""

    def __init__(self, meta):
        super().__init__()
        c, hidden = int(meta["channels"]), int(meta["hidden"])
        self.choices = meta["architecture"].split("/")
        for i, choice in enumerate(self.choices, start=1):
            block = nn.Module()
            if choice != "skip":
                k = int(choice)
                block.conv = nn.Conv2d(1 if i == 1 else c, c, k, padding=k // 2)
            if meta["variant"] == "concat":
                block.mix = nn.Conv2d(c, c, 1)
            setattr(self, f"block{i}", block)
        side = int(meta["image_size"]) >> len(self.choices)
        self.fc1 = nn.Linear(c * side * side, hidden)
        self.fc2 = nn.Linear(hidden, int(meta["classes"]))

    def forward(self, x):
        for i in range(1, len(self.choices) + 1):
            block = getattr(self, f"block{i}")
            if hasattr(block, "conv"):
                x = block.conv(x)
            if hasattr(block, "mix"):
                x = block.mix(x)
            x = F.max_pool2d(F.relu(x), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def read_idx(path):
    """An IDX file (gzip'd or raw) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * d : 8 + 4 * d], "big") for d in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_set(data):
    def find(stem):
        for name in (f"{stem}.gz", stem):
            if (data / name).exists():
                return data / name
        raise SystemExit(f"{data}: no {stem}[.gz]")

    images = read_idx(find("t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    labels = read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64)
    images = (images - 0.1307) / 0.3081
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).parent.parent / "data/mnist")
    args = parser.parse_args()

    with safe_open(args.weights, "pt") as f:
        meta = f.metadata()
    model = Subnet(meta)
    model.load_state_dict(load_file(args.weights), strict=True)
    model.eval()

    images, labels = test_set(args.data)
    correct, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(labels), 1000):
            logits = model(images[start : start + 1000])
            batch = labels[start : start + 1000]
            correct += int((logits.argmax(1) == batch).sum())
            loss += float(F.cross_entropy(logits, batch, reduction="sum"))
    count = len(labels)
    print(json.dumps({
        "subnet": meta["subnet"],
        "architecture": meta["architecture"],
        "variant": meta["variant"],
        "correct": correct,
        "accuracy": correct / count,
        "loss": loss / count,
    }))


if __name__ == "__main__":
    main()
