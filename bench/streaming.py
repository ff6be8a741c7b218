"""Streaming: unlearning and evaluating a memory-mapped data set larger than the memory it may use.

Writes a synthetic classification set of at least ``--gigabytes`` of float32 rows to a
temporary ``.npy`` file (class means plus noise, written in chunks), opens it with
``NpyArray`` (``np.load(mmap_mode="r")`` for its layout, rows read per batch), trains an
original model on a part of it, unlearns one class with ``finetune`` and ``scrub`` over the
whole retain set, and evaluates all three models on every row. Prints the peak resident memory
of the process while it unlearns and evaluates the whole set (target: below 1 GB; the window
starts after the in-memory comparison, whose copy would otherwise count) and, on a slice that
fits in memory, the time per training
epoch through the memory-mapped loader path against the same rows as an in-memory tensor
(target: ratio <= 1.15, median of interleaved repeats in the same run).

Then the same comparison for a Parquet table read by row groups (``ParquetColumns``): a file of
``--parquet-rows`` rows of ``--parquet-dim`` float32 features in row groups of
``--row-group`` rows, one training epoch through the streamed loader path against the same rows
in memory (ratio printed, with the row groups read per epoch). ``--skip-npy`` runs only this part.

    python bench/streaming.py [--gigabytes 2] [--dim 3072] [--fit-rows 20000] [--repeats 3]
                              [--parquet-rows 200000] [--parquet-dim 64] [--row-group 20000] [--skip-npy]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from obliviate import Dataset, ForgetSpec, TrainConfig, UnlearningTask, build_model, evaluate, fit, unlearn
from obliviate.data import NpyArray, ParquetColumns, split_dataset


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """Peak resident set size since the last ``reset_peak`` (Linux: VmHWM), in MB."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to /proc/self/clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def write_npy(path: Path, rows: int, dim: int, classes: int, seed: int, chunk: int = 2048) -> np.ndarray:
    """Class means plus unit noise, written chunk by chunk so the writer never holds the array;
    returns the labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 0.3, (classes, dim)).astype(np.float32)
    labels = rng.integers(0, classes, rows)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, chunk):
            y = labels[start : start + chunk]
            f.write((means[y] + rng.standard_normal((len(y), dim), dtype=np.float32)).tobytes())
    return labels


def epoch_seconds(data: Dataset, dim: int, classes: int, batch_size: int) -> float:
    model = build_model("mlp", (dim,), classes, seed=0, hidden=(32,))
    start = time.perf_counter()
    fit(model, data, TrainConfig(epochs=1, batch_size=batch_size, seed=0))
    return time.perf_counter() - start


def parquet_comparison(rows: int, dim: int, row_group: int, classes: int, batch_size: int, repeats: int) -> None:
    """Epoch time through ``ParquetColumns`` against the same rows as an in-memory tensor."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.parquet"
        rng = np.random.default_rng(1)
        means = rng.normal(0, 0.3, (classes, dim)).astype(np.float32)
        labels = rng.integers(0, classes, rows)
        columns = [f"x{i}" for i in range(dim)]
        start = time.perf_counter()
        with pq.ParquetWriter(path, pa.schema([(c, pa.float32()) for c in columns])) as writer:
            for lo in range(0, rows, row_group):
                y = labels[lo : lo + row_group]
                block = means[y] + rng.standard_normal((len(y), dim), dtype=np.float32)
                writer.write_table(pa.table({c: block[:, i] for i, c in enumerate(columns)}), row_group_size=row_group)
        size_mb = path.stat().st_size / 1e6
        print(f"parquet: wrote {rows} rows x {dim} float32 ({size_mb:.0f} MB, row groups of {row_group}) "
              f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
        source = ParquetColumns(path, columns)
        streamed = Dataset(source, torch.from_numpy(labels), name="parquet")
        in_memory = Dataset(streamed.X.clone(), streamed.y)
        times: dict[str, list[float]] = {"parquet": [], "in-memory": []}
        epoch_seconds(in_memory.subset(torch.arange(1024)), dim, classes, batch_size)  # warm-up
        reads = []
        for _ in range(repeats):
            before = source.reads
            times["parquet"].append(epoch_seconds(streamed, dim, classes, batch_size))
            reads.append(source.reads - before)
            times["in-memory"].append(epoch_seconds(in_memory, dim, classes, batch_size))
        med = {k: statistics.median(v) for k, v in times.items()}
        groups = -(-rows // row_group)
        print(f"parquet epoch over {rows} rows (median of {repeats}): parquet {med['parquet']:.2f} s, "
              f"in-memory {med['in-memory']:.2f} s; row groups read per epoch {reads} of {groups}")  # fmt: skip
        print(f"parquet / in-memory = {med['parquet'] / med['in-memory']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--dim", type=int, default=3072, help="features per row (float32)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--fit-rows", type=int, default=20000, help="rows of the in-memory comparison")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parquet-rows", type=int, default=200_000, help="rows of the Parquet comparison (0: skip)")
    parser.add_argument("--parquet-dim", type=int, default=64)
    parser.add_argument("--row-group", type=int, default=20_000)
    parser.add_argument("--skip-npy", action="store_true", help="run only the Parquet comparison")
    args = parser.parse_args()
    if args.parquet_rows:
        parquet_comparison(args.parquet_rows, args.parquet_dim, args.row_group, args.classes, args.batch_size,
                           args.repeats)  # fmt: skip
    if args.skip_npy:
        return
    rows = int(np.ceil(args.gigabytes * 1e9 / (4 * args.dim)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inputs.npy"
        start = time.perf_counter()
        labels = write_npy(path, rows, args.dim, args.classes, seed=0)
        size_gb = path.stat().st_size / 1e9
        print(f"wrote {rows} rows x {args.dim} float32 = {size_gb:.2f} GB in {time.perf_counter() - start:.0f} s")
        data = Dataset(NpyArray(path), torch.from_numpy(labels), name="streamed")

        # Loader path vs in-memory path on rows that fit (same rows, same model, same seed).
        part = data.subset(torch.arange(args.fit_rows))
        in_memory = Dataset(part.X.clone(), part.y)  # read through the mapping, which releases its pages
        times: dict[str, list[float]] = {"memory-mapped": [], "in-memory": []}
        epoch_seconds(in_memory.subset(torch.arange(1024)), args.dim, args.classes, args.batch_size)  # warm-up
        for _ in range(args.repeats):
            times["memory-mapped"].append(epoch_seconds(part, args.dim, args.classes, args.batch_size))
            times["in-memory"].append(epoch_seconds(in_memory, args.dim, args.classes, args.batch_size))
        med = {k: statistics.median(v) for k, v in times.items()}
        del in_memory
        ratio = med["memory-mapped"] / med["in-memory"]
        print(f"epoch over {args.fit_rows} rows (median of {args.repeats}):", end="")
        print(f" memory-mapped {med['memory-mapped']:.2f} s, in-memory {med['in-memory']:.2f} s")
        print(f"loader / in-memory = {ratio:.3f} (target <= 1.15: {'met' if ratio <= 1.15 else 'MISSED'})")

        # The whole file: train on a part, unlearn over all retained rows, evaluate on every row.
        print(f"peak RSS of writing and the comparison: {peak_rss_mb():.0f} MB (in-memory copy included)")
        reset_peak()
        print(f"RSS before streaming (imports, labels): {_status_mb('VmRSS') or 0:.0f} MB")
        split = split_dataset(data, test_fraction=0.1, seed=0)
        task = UnlearningTask.build(split, ForgetSpec(classes=[0]))
        original = build_model("mlp", (args.dim,), args.classes, seed=0, hidden=(32,))
        fit(original, split.train.subset(torch.arange(args.fit_rows)), TrainConfig(epochs=1, batch_size=256))
        models, logs = {"original": original}, {}
        for method, config in (("finetune", {"epochs": 1, "batch_size": 256}), ("scrub", {"batch_size": 256})):
            start = time.perf_counter()
            result = unlearn(original, task, method, **config)
            models[method], logs[method] = result.model, result.log
            print(f"{method}: {result.log.steps} steps over {len(task.retain)} retained rows in "
                  f"{time.perf_counter() - start:.0f} s, peak RSS so far {peak_rss_mb():.0f} MB")  # fmt: skip
        start = time.perf_counter()
        report = evaluate(task, models, reference=None, logs=logs, metrics=["forget_acc", "retain_acc", "test_acc"])
        print(f"evaluate: {time.perf_counter() - start:.0f} s")
        for name, res in report.models.items():
            print(f"  {name:9s} " + "  ".join(f"{k} {v:.1f}" for k, v in res.metrics.items()))
    peak = peak_rss_mb()
    verdict = "met" if peak < 1024 else "MISSED"
    print(f"data {size_gb:.2f} GB on disk; peak RSS while unlearning and evaluating it {peak:.0f} MB")
    print(f"(target < 1024 MB: {verdict})")


if __name__ == "__main__":
    main()
