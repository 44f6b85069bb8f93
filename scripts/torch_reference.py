#!/usr/bin/env python3
"""Times the study's protocol in PyTorch on this machine, for BENCHMARKS.md.

One one-shot training epoch of the Sum SuperNet (batch 64, Adadelta lr 1.0, a random subnet
per minibatch, shuffled) and one evaluation of the four subnets on the 10k test images, with
`--threads` CPU threads (2 by default, like the project's machine). Reads the shipped MNIST
(data/mnist/*.gz) directly, so torchvision is not needed. Prints one JSON object.

    python3 -m pip install torch numpy
    python3 scripts/torch_reference.py [--threads 2] [--steps 938]
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


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv3 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv5 = nn.Conv2d(cin, cout, 5, padding=2)

    def forward(self, x, c):
        # Only the chosen branch runs, as in this project (the original multiplies by 0).
        y = self.conv5(x) if c else self.conv3(x)
        return F.max_pool2d(F.relu(y), 2)


class SuperNetSum(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1, self.block2 = Block(1, 8), Block(8, 8)
        self.fc1, self.fc2 = nn.Linear(8 * 7 * 7, 32), nn.Linear(32, 10)

    def forward(self, x, choice):
        x = self.block2(self.block1(x, choice[0]), choice[1])
        return F.log_softmax(self.fc2(F.relu(self.fc1(x.flatten(1)))), dim=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=938)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    random.seed(1)
    train_x, train_y = split("train")
    test_x, test_y = split("t10k")
    net = SuperNetSum()
    optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
    subnets = [(0, 0), (1, 0), (0, 1), (1, 1)]

    order = torch.randperm(len(train_x))
    started = time.perf_counter()
    for step in range(args.steps):
        batch = order[step * 64:(step + 1) * 64]
        optimizer.zero_grad()
        loss = F.nll_loss(net(train_x[batch], random.choice(subnets)), train_y[batch])
        loss.backward()
        optimizer.step()
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    accuracy = {}
    with torch.no_grad():
        for choice in subnets:
            correct = sum(
                (net(test_x[i:i + 1000], choice).argmax(1) == test_y[i:i + 1000]).sum().item()
                for i in range(0, len(test_x), 1000)
            )
            accuracy[f"{choice[0]}{choice[1]}"] = correct / len(test_x)
    eval_seconds = time.perf_counter() - started
    print(json.dumps({
        "torch": torch.__version__,
        "threads": args.threads,
        "train_steps": args.steps,
        "train_seconds": round(train_seconds, 3),
        "epoch_seconds": round(train_seconds * 938 / args.steps, 3),
        "eval_seconds": round(eval_seconds, 3),
        "accuracy": accuracy,
    }))


if __name__ == "__main__":
    main()
