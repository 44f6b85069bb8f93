"""Load a subnet written by `supernet export` into a plain PyTorch module and evaluate it.

    python3 scripts/export_check.py subnet.safetensors [--data data/mnist]

The module is built from the file's metadata alone and loaded with `strict=True`; it prints
the test accuracy, correct count and mean loss as JSON, to compare with
`supernet eval --weights subnet.safetensors --json`. Needs torch, safetensors and numpy.
"""

import argparse
import gzip
import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


class Sep(nn.Module):
    """`sepK`: a depthwise K x K conv, then a pointwise 1x1 conv, nothing between."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def choice_module(token, cin, cout):
    """The module a choice's parameters live in, as (name, module); None for a choice without
    parameters (a pool, skip)."""
    if re.fullmatch(r"\d+", token):
        k = int(token)
        return "conv", nn.Conv2d(cin, cout, k, padding=k // 2)
    if re.fullmatch(r"\d+d\d+", token):
        k, d = map(int, token.split("d"))
        return "conv", nn.Conv2d(cin, cout, k, padding=d * (k - 1) // 2, dilation=d)
    if token.startswith("sep"):
        return "sep", Sep(cin, cout, int(token[3:]))
    return None


def parameter_free(token, x):
    """A choice without parameters: a stride-1 pool or the identity."""
    if token.startswith("max"):
        k = int(token[3:])
        return F.max_pool2d(x, k, 1, k // 2)
    if token.startswith("avg"):
        k = int(token[3:])
        return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)
    assert token == "skip", token
    return x


class Subnet(nn.Module):
    """Per block its choice (a conv, dilated or separable, a stride-1 pool or the identity),
    for Concat a 1x1 mix, then ReLU and 2x2 max-pool; then fc1, ReLU, fc2."""

    def __init__(self, meta):
        super().__init__()
        c, hidden = int(meta["channels"]), int(meta["hidden"])
        self.choices = meta["architecture"].split("/")
        for i, choice in enumerate(self.choices, start=1):
            block = nn.Module()
            module = choice_module(choice, 1 if i == 1 else c, c)
            if module is not None:
                setattr(block, *module)
            if meta["variant"] == "concat":
                block.mix = nn.Conv2d(c, c, 1)
            setattr(self, f"block{i}", block)
        side = int(meta["image_size"]) >> len(self.choices)
        self.fc1 = nn.Linear(c * side * side, hidden)
        self.fc2 = nn.Linear(hidden, int(meta["classes"]))

    def forward(self, x):
        for i, choice in enumerate(self.choices, start=1):
            block = getattr(self, f"block{i}")
            if hasattr(block, "conv"):
                x = block.conv(x)
            elif hasattr(block, "sep"):
                x = block.sep(x)
            else:
                x = parameter_free(choice, x)
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
