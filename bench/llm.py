"""Causal-LM unlearning benchmark: TOFU-style forgetting of 10% of generated profiles.

For each seed (which sets the profiles, the split, the initialisation and the methods'
randomness) a tiny GPT-2 is fine-tuned on all facts (the original) and on all but the forget
profiles (the retain oracle, whose fine-tuning time is the cost every method is compared
with), each method runs on the original, and every model is measured on the same request.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/llm.py --seeds 0,1,2 --json out/bench_llm.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
from overrides import method_overrides

from obliviate.atomic import atomic_write_text
from obliviate.llm.demo import COLUMNS, run_lm_experiment
from obliviate.llm.methods import LM_REGISTRY


def cell(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if fmt.endswith("e"):  # p-values span orders of magnitude: median and range
        return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} ± {std:{fmt}}"


def table(runs: list[dict], names: list[str]) -> str:
    lines = ["| model | " + " | ".join(label for _, label, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in names:
        cells = [cell([run[name].get(key) for run in runs], fmt) for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(runs: list[dict], methods: list[str]) -> str:
    """The issue's targets: original forget quality <= 1e-5; some method with forget quality
    >= 0.1 and model utility >= 0.9 of the original's (medians / means over seeds)."""
    per_seed = ", ".join(f"{r['original']['forget_quality']:.1e}" for r in runs)
    lines = [f"original forget quality per seed: {per_seed}"]
    for name in methods:
        fq = statistics.median(r[name]["forget_quality"] for r in runs)
        mu = statistics.fmean(r[name]["model_utility"] / r["original"]["model_utility"] for r in runs)
        ok = fq >= 0.1 and mu >= 0.9
        lines.append(f"{name}: median forget quality {fq:.3g}, utility / original's {mu:.3f} -> {'MET' if ok else '-'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--methods", default=",".join(LM_REGISTRY))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="METHOD.KEY=VALUE config override (JSON value)")
    parser.add_argument("--json", default=None, help="write every per-seed number here")
    parser.add_argument("--cache", default=None, help="keep the fine-tuned original and oracle here, per seed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    overrides = method_overrides(args.set)
    start = time.perf_counter()
    runs, settings = [], []
    for seed in seeds:
        run = run_lm_experiment(
            methods, n_people=args.people, fraction=args.fraction, seed=seed, overrides=overrides, cache=args.cache
        )
        runs.append(run.rows)
        settings.append(run.setting)
        print(f"seed {seed} done at {time.perf_counter() - start:.0f}s", flush=True)
    s = settings[0]
    print(
        f"\n### {args.people} profiles, forget {args.fraction:.0%}: {s['forget_facts']} forget, {s['retain_facts']} "
        f"retain, {s['holdout_facts']} never-seen, {s['world_facts']} world facts; seeds {seeds}; "
        f"{time.perf_counter() - start:.0f}s wall\n"
    )
    print("forget quality: median [min, max] over seeds; others mean ± std\n")
    print(table(runs, ["original", "retain", *methods]))
    print("\n" + verdict(runs, methods))
    if args.json:
        atomic_write_text(args.json, json.dumps({"runs": runs, "settings": settings}, indent=2))


if __name__ == "__main__":
    main()
