#!/usr/bin/python3
"""The zoo training of `transferbench zoo build`, written as a plain PyTorch script.

This is the baseline of bench/zoo_speed (issue 14: "the same zoo training written as a plain
PyTorch script"): it reads the same grid file (experiments/zoos/*.json) and the same MNIST IDX
files, and trains every unit the way experiments/train/trainer.cpp does: cnn2464 (conv 1->8 k5,
pool 2, conv 8->6 k5, pool 2, conv 6->4 k2, fc 36->20, head 20->10), the grid's activation and
init (biases zeroed), Adam lr 1e-3, batch 64, a fresh shuffle each epoch, 10% of each class
held out for validation, early stopping once validation accuracy stays within 0.05 points over
three epochs, a checkpoint (state_dict) at each of the grid's epochs and at the stop, test
accuracy on the subset's own test images at each checkpoint.

It is the loop a PyTorch user would write: one process, PyTorch's default threads, one model
at a time, `loss.item()` every step. Its random streams are PyTorch's (torch.randperm), not
TransferBench's portable permutations, so its models are equal in distribution, not in bits:
bench/zoo_speed compares their test accuracy per checkpoint bin beside the speed.

Usage: bench/zoo_pytorch.py GRID.json --data DIR --out DIR [--threads N] [--json FILE]
Needs python3-torch (Debian; scripts/setup installs it).
"""
import argparse
import itertools
import json
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "leakyrelu": lambda x: F.leaky_relu(x, 0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


class Cnn2464(nn.Module):
    def __init__(self, activation):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.conv2 = nn.Conv2d(8, 6, 5)
        self.conv3 = nn.Conv2d(6, 4, 2)
        self.fc1 = nn.Linear(36, 20)
        self.head = nn.Linear(20, 10)
        self.act = ACTIVATIONS[activation]

    def forward(self, x):
        x = x.reshape(x.size(0), 1, 28, 28)
        x = self.act(F.max_pool2d(self.conv1(x), 2))
        x = self.act(F.max_pool2d(self.conv2(x), 2))
        x = self.act(self.conv3(x))
        x = self.act(self.fc1(x.reshape(x.size(0), -1)))
        return self.head(x)


def initialise(model, init):
    if init == "default":
        return
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif init == "kaiming_uniform":
                nn.init.kaiming_uniform_(p)
            elif init == "kaiming_normal":
                nn.init.kaiming_normal_(p)
            elif init == "xavier_uniform":
                nn.init.xavier_uniform_(p)
            elif init == "xavier_normal":
                nn.init.xavier_normal_(p)
            elif init == "uniform":
                nn.init.uniform_(p, -0.1, 0.1)
            elif init == "normal":
                nn.init.normal_(p, 0.0, 0.1)
            else:
                sys.exit(f"zoo_pytorch: init '{init}': unknown")


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    _, _, kind, ndim = struct.unpack(">BBBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.reshape(dims)


def load_mnist(data_dir):
    def split(images, labels):
        x = read_idx(os.path.join(data_dir, images)).reshape(-1, 784).float().div_(255.0)
        y = read_idx(os.path.join(data_dir, labels)).long()
        return x, y
    return split("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def subsets(spec):
    if isinstance(spec, list):
        return [sorted(s) for s in spec]
    lo, hi = spec.get("sizes", [2, 10])
    out = [list(c) for k in range(lo, hi + 1) for c in itertools.combinations(range(10), k)]
    limit = spec.get("limit", 0)
    return out[:limit] if limit else out


def select(x, y, classes):
    mask = torch.zeros_like(y, dtype=torch.bool)
    for c in classes:
        mask |= y == c
    return x[mask], y[mask]


def carve_validation(x, y, classes, fraction, per_class, generator):
    fit, val = [], []
    for c in classes:
        idx = (y == c).nonzero().squeeze(1)
        if per_class > 0:
            idx = idx[:per_class]
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n_val = int(fraction * idx.numel())
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    fit, val = torch.cat(fit).sort().values, torch.cat(val).sort().values
    return (x[fit], y[fit]), (x[val], y[val])


def accuracy(model, x, y):
    # A count over the size, in double precision, as the C++ trainer: the early-stopping margin
    # (0.05 points) is one image of 2,000, so a float32 mean could stop on another epoch.
    with torch.no_grad():
        return (model(x).argmax(1) == y).sum().item() / y.numel()


def train_unit(unit, grid, train_set, test_set, out_dir):
    classes, activation, init, seed = unit
    train_opts = {"lr": 1e-3, "batch_size": 64, "val_fraction": 0.1, "early_stopping": True}
    train_opts.update(grid.get("train", {}))
    checkpoints = grid["checkpoints"]
    torch.manual_seed(seed)
    model = Cnn2464(activation)
    initialise(model, init)
    generator = torch.Generator().manual_seed(seed)
    (fx, fy), (vx, vy) = carve_validation(*select(*train_set, classes), classes, train_opts["val_fraction"],
                                          grid.get("data.train_per_class", 0), generator)
    tx, ty = select(*test_set, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_opts["lr"])
    batch = train_opts["batch_size"]
    val_acc, saved = [], {}
    for epoch in range(1, checkpoints[-1] + 1):
        model.train()
        order = torch.randperm(fx.size(0), generator=generator)
        loss_sum = 0.0
        for i in range(0, fx.size(0), batch):
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(fx[idx]), fy[idx])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * idx.numel()
        model.eval()
        val_acc.append(accuracy(model, vx, vy))
        stop = train_opts["early_stopping"] and len(val_acc) >= 3 and max(val_acc[-3:]) - min(val_acc[-3:]) <= 0.0005
        last = stop or epoch == checkpoints[-1]
        if epoch in checkpoints or last:
            bin_ = max([c for c in checkpoints if c <= epoch], default=checkpoints[0])
            path = os.path.join(out_dir, f"{'-'.join(map(str, classes))}_{activation}_{init}_s{seed}_e{bin_}.pt")
            torch.save(model.state_dict(), path)
            saved[bin_] = {"epoch": epoch, "test_acc": accuracy(model, tx, ty)}
        if stop:
            break
    return saved


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid")
    p.add_argument("--data", required=True, help="directory of the MNIST IDX files (results/data/mnist)")
    p.add_argument("--out", required=True, help="directory for the checkpoints")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--json", help="write the timing and accuracies here")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with open(args.grid) as f:
        grid = json.load(f)
    if grid.get("dataset", "mnist") != "mnist" or grid.get("data.dir") or grid.get("arch", "cnn2464") != "cnn2464":
        sys.exit("zoo_pytorch: only cnn2464 grids on the default mnist data (as bench/zoo_speed.json) are written here")
    for a in grid["activations"]:
        if a not in ACTIVATIONS:
            sys.exit(f"zoo_pytorch: activation '{a}': unknown (expected one of {', '.join(ACTIVATIONS)})")
    grid.setdefault("checkpoints", [11, 16, 21, 26, 31, 36])
    grid.setdefault("seeds", [0])
    os.makedirs(args.out, exist_ok=True)
    train_set, test_set = load_mnist(args.data)
    units = [(c, a, i, s) for c in subsets(grid["subsets"]) for a in grid["activations"] for i in grid["inits"]
             for s in grid["seeds"]]
    start = time.perf_counter()
    models = []
    for u in units:
        for bin_, r in sorted(train_unit(u, grid, train_set, test_set, args.out).items()):
            models.append({"classes": u[0], "activation": u[1], "init": u[2], "seed": u[3], "bin": bin_, **r})
    seconds = time.perf_counter() - start
    result = {"grid": grid["name"], "units": len(units), "checkpoints": len(models), "seconds": seconds,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "models": models}
    print(f"zoo_pytorch {grid['name']}: {len(units)} units, {len(models)} checkpoints in {seconds:.1f} s "
          f"({60 * len(units) / seconds:.1f} units/min, {torch.get_num_threads()} threads)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
