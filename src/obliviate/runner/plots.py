"""The report's figures, drawn with matplotlib's object API (no global pyplot state, no display)
and returned as base64 PNG so the HTML page carries them inside itself."""

from __future__ import annotations

import base64
import io

import numpy as np

from obliviate.extras import need

Figure = need("matplotlib.figure", "plots").Figure


def to_base64_png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _first_seed_records(results: dict, scenario: str) -> list[dict]:
    seed = results["suite"]["seeds"][0]
    recs = [r for r in results["records"] if r["scenario"] == scenario and r["seed"] == seed]
    order = [m["label"] or m["name"] for m in results["suite"]["methods"]]
    return sorted(recs, key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))


def _per_model(records: list[dict], field: str) -> dict:
    """original and retrain from the first record, then each method's own row."""
    out: dict = {}
    for rec in records:
        for name, value in rec[field].items():
            if name not in out and (name in ("original", "retrain") or name == rec["method"]):
                out[name] = value
    return out


def per_class_accuracy(results: dict, scenario: str) -> str | None:
    records = _first_seed_records(results, scenario)
    if not records or "per_class_test_acc" not in records[0]:
        return None
    accs = _per_model(records, "per_class_test_acc")
    n_classes = len(next(iter(accs.values())))
    fig = Figure(figsize=(max(6, n_classes * 0.8), 3.2))
    ax = fig.add_subplot()
    width = 0.8 / len(accs)
    x = np.arange(n_classes)
    for i, (name, values) in enumerate(accs.items()):
        ax.bar(x + (i - (len(accs) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x)
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{scenario}: per-class test accuracy, original and after unlearning (first seed)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_base64_png(fig)


def loss_histograms(results: dict, scenario: str) -> str | None:
    records = _first_seed_records(results, scenario)
    if not records:
        return None
    hists = _per_model(records, "loss_hist")
    edges = np.asarray(results["loss_edges"])
    fig = Figure(figsize=(3.2 * len(hists), 3.0), layout="constrained")
    axes = fig.subplots(1, len(hists), sharey=True, squeeze=False)[0]
    for ax, (name, h) in zip(axes, hists.items(), strict=True):
        for view, color in (("forget", "tab:red"), ("test", "tab:blue")):
            counts = np.asarray(h[view], float)
            density = counts / max(counts.sum(), 1)
            ax.stairs(
                density, edges, color=color, label=f"{view} ({int(counts.sum())})", fill=view == "test", alpha=0.6
            )
        ax.set_xscale("log")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("per-example loss")
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("fraction of rows")
    fig.suptitle(f"{scenario}: loss on forget vs test rows (first seed)")
    return to_base64_png(fig)


def metric_vs_time(results: dict) -> str:
    """One point per method and scenario: mean wall time against mean Avg Gap (or first gap)."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    label = "avg gap to retrain (lower is better)"
    markers = "osD^v<>p*"
    for i, (scenario, rows) in enumerate(results["summary"].items()):
        for name, row in rows.items():
            if name == "original" or not row["seconds"]:
                continue
            y = row["avg_gap"]
            if y is None and row["gaps"]:
                key = sorted(row["gaps"])[0]
                y, label = row["gaps"][key], f"gap in {key} to retrain"
            if y is None:
                continue
            ax.scatter(row["seconds"]["mean"], y["mean"], marker=markers[i % len(markers)], s=50)
            ax.annotate(
                f"{name} ({scenario})",
                (row["seconds"]["mean"], y["mean"]),
                fontsize="small",
                xytext=(4, 4),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_xlabel("wall time of the method (s, log scale)")
    ax.set_ylabel(label)
    ax.set_title("quality vs cost across methods")
    return to_base64_png(fig)
