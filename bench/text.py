"""Benchmark classification unlearning on text (issue 16): language identification over the
ChatterBot corpus, a byte-level BPE tokenizer trained on the training rows, and a small
transformer encoder (``text-transformer``).

The protocol, the metrics and the table are those of ``bench/classification.py`` (training seeds
fix split, forget set and original; every unlearning seed retrains the reference and runs every
method back to back; Avg Gap against the mean retrained model). Class forgetting forgets one
language (Italian, class 3); random forgetting forgets 10% of the training rows. Methods that
synthesise or attack inputs by gradient cannot run on token ids: they are listed with the
one-line reason they give, and never run.

    PYTHONPATH=src python bench/text.py                                  # 3 training seeds x 1 unlearning seed
    PYTHONPATH=src python bench/text.py --seeds 0 --scenarios class --methods finetune,scrub
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from classification import add_run_options, print_table, run_options, run_training_seed

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, fit, load_data
from obliviate.methods import REGISTRY, MethodError

DATA = "text-lang"
MODEL = {"dim": 32, "layers": 1, "heads": 4}
RECIPE = TrainConfig(optimizer="adam", lr=3e-3, epochs=10, batch_size=64, schedule="cosine")
FORGET_CLASS = 3
SKIPPED = {
    "retrain": "the reference row",
    "sisa": "trains its own sharded ensemble from scratch (not a post-hoc method)",
}


def scenario_task(scenario: str, seed: int) -> UnlearningTask:
    split = load_data(DATA, seed=seed)
    spec = ForgetSpec(classes=[FORGET_CLASS]) if scenario == "class" else ForgetSpec(fraction=0.1, seed=seed)
    return UnlearningTask.build(split, spec)


def train_original(task: UnlearningTask, seed: int):
    recipe = RECIPE.model_copy(update={"seed": seed})
    model = build_model("text-transformer", task.input_shape, task.num_outputs, seed=seed, **MODEL)
    return fit(model, task.train, recipe).model, recipe


def runnable(methods: list[str], task: UnlearningTask) -> tuple[list[str], dict[str, str]]:
    """The methods that accept this task, and the one-line refusal of every other one."""
    ok, refused = [], {}
    for name in methods:
        try:
            REGISTRY[name].check(task)
        except MethodError as exc:
            refused[name] = str(exc)
            continue
        ok.append(name)
    return ok, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    classification = sorted(n for n, c in REGISTRY.items() if "classification" in c.kinds and n not in SKIPPED)
    add_run_options(parser, "100", ",".join(classification))
    parser.add_argument("--scenarios", default="class,random")
    args = parser.parse_args()
    seeds, unlearn_seeds, methods = run_options(parser, args)
    privacy_ok = len(unlearn_seeds) >= 3
    start = time.perf_counter()
    print(
        f"# {DATA} · text-transformer {MODEL} · recipe {RECIPE.model_dump(exclude={'seed'})} · training seeds "
        f"{seeds} · unlearning seeds {unlearn_seeds} · torch threads {args.threads}"
    )
    originals, everything = {}, {}
    for scenario in args.scenarios.split(","):
        per_seed = []
        for seed in seeds:
            task = scenario_task(scenario, seed)
            if seed not in originals:
                originals[seed] = train_original(task, seed)
            ok, refused = runnable(methods, task)
            privacy = privacy_ok and scenario == "random"
            per_seed.append(run_training_seed(task, *originals[seed], unlearn_seeds, ok, privacy))
            print(f"  seed {seed} {scenario} done at {time.perf_counter() - start:.0f}s", flush=True)
            everything[scenario] = per_seed
            if args.json:  # after every seed, so a run cut short keeps what it measured
                Path(args.json).write_text(json.dumps(everything, indent=1))
        print_table(scenario, per_seed, privacy, len(unlearn_seeds))
        for name, reason in refused.items():
            print(f"- {name} refused: {reason}")
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
