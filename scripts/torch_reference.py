#!/usr/bin/env python3
"""Times the study's protocol in PyTorch on this machine, for BENCHMARKS.md.

One one-shot training epoch of the Sum SuperNet (batch 64, Adadelta lr 1.0, a random subnet
per minibatch, shuffled) and one evaluation of the four subnets on the 10k test images, with
`--threads` CPU threads (2 by default, like the project's machine). Reads the shipped MNIST
(data/mnist/*.gz) directly. Prints one JSON object.

Three ways to run the same protocol:
- `--style lean` (default): only the drawn branch is computed (as this project does) and
  batches are sliced from pre-normalised tensors.
- `--style study`: as the original study's code: both branches computed and masked
  (`conv3(x) * (1 - c) + conv5(x) * c`) and batches drawn through a `DataLoader` of the
  pre-normalised tensors.
- `--style original`: `study`, with the original code's input pipeline too: every image, in
  training and in each subnet's evaluation, goes through torchvision's per-sample
  `ToTensor()` + `Normalize((0.1307,), (0.3081,))` from a PIL image, as `datasets.MNIST` does.

    python3 -m pip install torch numpy          # torchvision and pillow for --style original
    python3 scripts/torch_reference.py [--style lean|study|original] [--threads 2] [--steps 938]
"""
import argparse
import gzip
import json
import pathlib
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "mnist"


def read_idx(name):
    raw = gzip.open(DATA / f"{name}.gz").read()
    ndims = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def split(prefix):
    images = torch.from_numpy(read_idx(f"{prefix}-images-idx3-ubyte").copy()).float().div(255)
    labels = torch.from_numpy(read_idx(f"{prefix}-labels-idx1-ubyte").copy()).long()
    return ((images - 0.1307) / 0.3081).unsqueeze(1), labels


class PerSampleMnist(torch.utils.data.Dataset):
    """What torchvision's `datasets.MNIST` does per item: a PIL image through the transform."""

    def __init__(self, prefix):
        from torchvision import transforms

        self.images = read_idx(f"{prefix}-images-idx3-ubyte")
        self.labels = read_idx(f"{prefix}-labels-idx1-ubyte").astype(np.int64)
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class Block(nn.Module):
    def __init__(self, cin, cout, masked):
        super().__init__()
        self.conv3 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv5 = nn.Conv2d(cin, cout, 5, padding=2)
        self.masked = masked

    def forward(self, x, c):
        if self.masked:
            # The study: both branches run, the inactive one multiplied by 0.
            y = self.conv3(x) * (1 - c) + self.conv5(x) * c
        else:
            # This project: only the chosen branch runs.
            y = self.conv5(x) if c else self.conv3(x)
        return F.max_pool2d(F.relu(y), 2)


class SuperNetSum(nn.Module):
    def __init__(self, masked):
        super().__init__()
        self.block1, self.block2 = Block(1, 8, masked), Block(8, 8, masked)
        self.fc1, self.fc2 = nn.Linear(8 * 7 * 7, 32), nn.Linear(32, 10)

    def forward(self, x, choice):
        x = self.block2(self.block1(x, choice[0]), choice[1])
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.flatten(1)))), dim=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--style", choices=["lean", "study", "original"], default="lean")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=938)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    random.seed(1)
    train_x, train_y = split("train")
    test_x, test_y = split("t10k")
    study = args.style in ("study", "original")
    net = SuperNetSum(masked=study)
    optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
    subnets = [(0, 0), (1, 0), (0, 1), (1, 1)]

    if args.style == "original":
        batches = iter(torch.utils.data.DataLoader(PerSampleMnist("train"), batch_size=64, shuffle=True))
        test_batches = torch.utils.data.DataLoader(PerSampleMnist("t10k"), batch_size=1000)
    else:
        test_batches = [(test_x[i:i + 1000], test_y[i:i + 1000]) for i in range(0, len(test_x), 1000)]
    if args.style == "study":
        dataset = torch.utils.data.TensorDataset(train_x, train_y)
        batches = iter(torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True))
    elif args.style == "lean":
        order = torch.randperm(len(train_x))
        batches = ((train_x[b], train_y[b]) for b in order.split(64))
    started = time.perf_counter()
    for _, (images, labels) in zip(range(args.steps), batches):
        optimizer.zero_grad()
        loss = F.nll_loss(net(images, random.choice(subnets)), labels)
        loss.backward()
        optimizer.step()
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    accuracy = {}
    with torch.no_grad():
        for choice in subnets:
            correct = sum(
                (net(images, choice).argmax(1) == labels).sum().item()
                for images, labels in test_batches
            )
            accuracy[f"{choice[0]}{choice[1]}"] = correct / len(test_x)
    eval_seconds = time.perf_counter() - started
    print(json.dumps({
        "torch": torch.__version__,
        "style": args.style,
        "threads": args.threads,
        "train_steps": args.steps,
        "train_seconds": round(train_seconds, 3),
        "epoch_seconds": round(train_seconds * 938 / args.steps, 3),
        "eval_seconds": round(eval_seconds, 3),
        "accuracy": accuracy,
    }))


if __name__ == "__main__":
    main()
