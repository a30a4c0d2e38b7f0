#!/usr/bin/python3
# Our entropic OT losses against POT (python3-pot, module `ot`), values and speed, on the same
# inputs in the same run. Run from the repository root after building transferbench:
#   /usr/bin/python3 bench/ot_speed.py [--repeat-small 5] [--repeat-large 1]
# (/usr/bin/python3: Debian's python3-pot is installed there; a pyenv python3 may shadow it on PATH.)
#
# Inputs: two random vectors of n = 256 and of n = 2,464 values (seed 0, on the scale of trained
# weights), written one number per line. Cases, with the same ε, iteration counts and uniform
# marginals on both sides:
#  - sinkhorn: `loss sinkhorn --set debias=false` against ot.sinkhorn2(method='sinkhorn_log'), the
#    transport cost <P, C> of the entropic plan, C_ij = (a_i - b_j)^2; tolerance 0 / stopThr 0, so
#    both run every iteration.
#  - sinkhorn_solver_log: the same with our solver=log (a logsumexp per step, as POT's).
#  - sinkhorn_debiased: `loss sinkhorn` (debias=true) against S(a,b) - S(a,a)/2 - S(b,b)/2 from
#    three ot.sinkhorn2 calls.
#  - gromov_wasserstein: `loss gromov_wasserstein` against ot.gromov.entropic_gromov_wasserstein2
#    (square_loss, C1 = |a_i - a_k|, C2 = |b_j - b_l|), POT's inner Sinkhorn fixed at 1,000
#    iterations and stopThr 1e-9, ours set to match.
# Ours runs with scaling=0 (no ε-scaling), the plain Sinkhorn scheme POT runs, and its default
# solver=stabilised unless the case says otherwise.
# Ours is timed by `loss ... --repeat N` (seconds_per_eval: the loss evaluated N times in one
# process, file reading excluded); POT over the same N calls in this process, each from the raw
# vectors (cost matrices included, as ours builds them inside the loss). Both in float64.
# Writes results/bench/ot_speed.json and prints a table.
import argparse
import json
import os
import subprocess
import tempfile
import time
import warnings

import numpy as np
import ot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin", "transferbench")
EPSILON = 1e-2
SINKHORN_ITERATIONS = 100
GW_ITERATIONS = 10


def ours(name, a_path, b_path, sets, repeat):
    cmd = [BIN, "loss", name, "--a", a_path, "--b", b_path, "--repeat", str(repeat)]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[1].startswith("seconds_per_eval "), out
    return float(out[0]), float(out[1].split()[1])


def pot_sinkhorn(a, b):
    w = np.full(len(a), 1.0 / len(a))
    return ot.sinkhorn2(w, w, (a[:, None] - b[None, :]) ** 2, EPSILON, method="sinkhorn_log",
                        numItermax=SINKHORN_ITERATIONS, stopThr=0)


def pot_sinkhorn_debiased(a, b):
    return pot_sinkhorn(a, b) - 0.5 * pot_sinkhorn(a, a) - 0.5 * pot_sinkhorn(b, b)


def pot_gromov(a, b):
    w = np.full(len(a), 1.0 / len(a))
    c1, c2 = np.abs(a[:, None] - a[None, :]), np.abs(b[:, None] - b[None, :])
    return ot.gromov.entropic_gromov_wasserstein2(c1, c2, w, w, "square_loss", EPSILON, max_iter=GW_ITERATIONS,
                                                  tol=1e-9)


def timed(fn, repeat, *args):
    start = time.perf_counter()
    for _ in range(repeat):
        value = fn(*args)
    return float(value), (time.perf_counter() - start) / repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat-small", type=int, default=5, help="evaluations per side at n = 256")
    parser.add_argument("--repeat-large", type=int, default=1, help="evaluations per side at n = 2,464")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # POT warns that stopThr 0 is never reached

    cases = [
        ("sinkhorn", pot_sinkhorn, "sinkhorn",
         [f"epsilon={EPSILON}", f"iterations={SINKHORN_ITERATIONS}", "tolerance=0", "debias=false", "scaling=0"]),
        ("sinkhorn_solver_log", pot_sinkhorn, "sinkhorn",
         [f"epsilon={EPSILON}", f"iterations={SINKHORN_ITERATIONS}", "tolerance=0", "debias=false", "scaling=0",
          "solver=log"]),
        ("sinkhorn_debiased", pot_sinkhorn_debiased, "sinkhorn",
         [f"epsilon={EPSILON}", f"iterations={SINKHORN_ITERATIONS}", "tolerance=0", "debias=true", "scaling=0"]),
        ("gromov_wasserstein", pot_gromov, "gromov_wasserstein",
         [f"epsilon={EPSILON}", f"iterations={GW_ITERATIONS}", "sinkhorn_iterations=1000", "tolerance=1e-9",
          "scaling=0"]),
    ]
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, repeat in ((256, args.repeat_small), (2464, args.repeat_large)):
            a = rng.normal(0.0, 0.1, n)
            b = 0.8 * rng.normal(0.0, 0.1, n) + 0.02
            paths = []
            for label, v in (("a", a), ("b", b)):
                paths.append(os.path.join(tmp, f"{label}{n}.txt"))
                with open(paths[-1], "w") as f:
                    f.write("".join(f"{x!r}\n" for x in v))
            for case, pot_fn, loss, sets in cases:
                ours_value, ours_seconds = ours(loss, paths[0], paths[1], sets, repeat)
                pot_value, pot_seconds = timed(pot_fn, repeat, a, b)
                rows.append({"case": case, "n": n, "repeat": repeat, "ours": ours_value, "pot": pot_value,
                             "relative_difference": abs(ours_value - pot_value) / max(abs(pot_value), 1e-300),
                             "ours_seconds": ours_seconds, "pot_seconds": pot_seconds,
                             "ratio_ours_over_pot": ours_seconds / pot_seconds, "options": sets})

    out = {"pot": ot.__version__, "numpy": np.__version__, "cpus": os.cpu_count(), "epsilon": EPSILON,
           "rows": rows}
    os.makedirs(os.path.join(ROOT, "results", "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "results", "bench", "ot_speed.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")

    print(f"| case | n | ours | POT | rel. diff | ours s/eval | POT s/eval | ours/POT |")
    print(f"|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['n']} | {r['ours']:.10g} | {r['pot']:.10g} | {r['relative_difference']:.1e} "
              f"| {r['ours_seconds']:.4g} | {r['pot_seconds']:.4g} | {r['ratio_ours_over_pot']:.2f} |")


if __name__ == "__main__":
    main()
