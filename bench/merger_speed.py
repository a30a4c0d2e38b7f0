#!/usr/bin/python3
"""One training step of the learned merger, TransferBench against the same model in PyTorch,
side by side in one run.

The PyTorch model below is experiments/merge/merger.cpp's TransformerAE line for line: the
report's tokenisation (26 tokens of 80 weights, 24 of 16, one embedding per token size and
encoder), sinusoidal positions scaled by sqrt(d_model), N pre-norm blocks (multi-head attention,
ReLU feed-forward, dropout) per encoder, the two encodings concatenated, flattened and mapped by
a dense layer with tanh to the neck, the decoder (neck → token sequence, positions, N blocks) and
one linear map per token size back to the 2,464 weights. A step: forward on a batch of 36 triples,
MSE, backward, gradient clipping at norm 1, Adam.

Ours is tb_bench's BM_MergerStep (bench/merger_bench.cpp) at the same configurations. Prints
milliseconds per step and the ratio PyTorch / ours, and writes results/bench/merger_speed.json.

Usage: bench/merger_speed.py [--build build] [--threads N]
Needs python3-torch (Debian; scripts/setup installs it) and a built tb_bench.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = [(64, 1), (128, 2)]  # (d_model, layers); d_ff = 2 d_model, neck = d_model, heads 4


class Block(nn.Module):
    def __init__(self, d, heads, d_ff, dropout):
        super().__init__()
        self.h = heads
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.f1, self.f2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, d = x.shape
        dk = d // self.h
        h = self.n1(x)
        split = lambda l: l(h).view(b, t, self.h, dk).transpose(1, 2)
        q, k, v = split(self.q), split(self.k), split(self.v)
        scores = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dk), -1)
        x = x + self.drop(self.o((self.drop(scores) @ v).transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.f2(self.drop(torch.relu(self.f1(self.n2(x))))))


class Stack(nn.Module):
    def __init__(self, d, layers, heads, d_ff, dropout):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d, heads, d_ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.norm(x)


def positions(t, d):
    pe = torch.zeros(t, d)
    pos = torch.arange(t, dtype=torch.float).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float) * (-math.log(10000.0) / d))
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe


class TransformerAE(nn.Module):
    GROUPS = [(26, 80), (24, 16)]

    def __init__(self, d, layers, heads=4, dropout=0.07):
        super().__init__()
        d_ff, neck, t = 2 * d, d, 50
        self.d, self.t = d, t
        self.embed_1 = nn.ModuleList(nn.Linear(s, d) for _, s in self.GROUPS)
        self.embed_2 = nn.ModuleList(nn.Linear(s, d) for _, s in self.GROUPS)
        self.unembed = nn.ModuleList(nn.Linear(d, s) for _, s in self.GROUPS)
        self.register_buffer("pe", positions(t, d))
        self.enc_1, self.enc_2, self.dec = (Stack(d, layers, heads, d_ff, dropout) for _ in range(3))
        self.fuse = nn.Linear(2 * d * t, neck)
        self.neck2seq = nn.Linear(neck, d * t)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, w, embed, stack):
        b = w.shape[0]
        tokens, start = [], 0
        for (count, size), e in zip(self.GROUPS, embed):
            tokens.append(e(w[:, start:start + count * size].view(b, count, size)))
            start += count * size
        return stack(torch.cat(tokens, 1) * math.sqrt(self.d) + self.pe)

    def forward(self, w1, w2):
        z1, z2 = self.encode(w1, self.embed_1, self.enc_1), self.encode(w2, self.embed_2, self.enc_2)
        b = w1.shape[0]
        neck = torch.tanh(self.fuse(torch.cat([z1, z2], 2).reshape(b, -1)))
        x = self.dec(self.neck2seq(neck).view(b, self.t, self.d) * math.sqrt(self.d) + self.pe)
        out, start = [], 0
        for (count, _), u in zip(self.GROUPS, self.unembed):
            out.append(u(x[:, start:start + count]).reshape(b, -1))
            start += count
        return torch.cat(out, 1)


def pytorch_ms(d, layers, steps=30):
    torch.manual_seed(0)
    model = TransformerAE(d, layers)
    w1, w2, w3 = (torch.randn(36, 2464) * 0.1 for _ in range(3))
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        adam.zero_grad()
        loss = (model(w1, w2) - w3).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        adam.step()
        return loss.item()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps, sum(p.numel() for p in model.parameters())


def ours_ms(build, env):
    out = subprocess.run([os.path.join(build, "bin", "tb_bench"), "--benchmark_filter=BM_MergerStep",
                          "--benchmark_format=json"], env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        # name: BM_MergerStep/d_model:64/layers:1
        parts = dict(p.split(":") for p in b["name"].split("/")[1:])
        result[(int(parts["d_model"]), int(parts["layers"]))] = (b["real_time"], b.get("parameters"))
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads of both sides (0: their defaults)")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.threads:
        torch.set_num_threads(args.threads)
        env["OMP_NUM_THREADS"] = str(args.threads)
    ours = ours_ms(args.build, env)
    rows = []
    print(f"{'config':<22}{'params':>10}{'ours ms':>10}{'pytorch ms':>12}{'pytorch/ours':>14}")
    for d, layers in CONFIGS:
        py, params = pytorch_ms(d, layers)
        tb, tb_params = ours[(d, layers)]
        if tb_params is not None and int(tb_params) != params:
            sys.exit(f"merger_speed: parameter counts differ at d_model={d}: ours {int(tb_params)}, PyTorch {params}")
        rows.append({"d_model": d, "layers": layers, "parameters": params, "ours_ms": tb, "pytorch_ms": py,
                     "ratio_pytorch_over_ours": py / tb})
        print(f"d_model {d:<4} layers {layers:<6}{params:>10}{tb:>10.2f}{py:>12.2f}{py / tb:>14.2f}")
    os.makedirs(os.path.join(ROOT, "results", "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "results", "bench", "merger_speed.json"), "w") as f:
        json.dump({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
