"""``obliviate bench``: suites, cached references, resume, results.json, report.html, and Ray = serial."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import yaml
from matplotlib.image import imread
from pydantic import ValidationError
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.runner.executor import SerialExecutor, make_executor
from obliviate.runner.jobs import Job, train_lira_shadow
from obliviate.runner.run import run_suite
from obliviate.runner.suite import Suite

SUITE = {
    "name": "tiny",
    "data": "digits",
    "architecture": "mlp",
    "model_kwargs": {"hidden": [32]},
    "recipe": {"optimizer": "adam", "lr": 0.005, "epochs": 3, "batch_size": 64},
    "scenarios": [{"name": "class3", "spec": {"classes": [3]}}],
    "methods": [
        {"name": "finetune", "config": {"epochs": 1}},
        {"name": "gradient_ascent", "label": "ga", "config": {"max_steps": 3}},
    ],
    "seeds": [0, 1],
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """The tiny suite run once through the CLI, serially."""
    root = tmp_path_factory.mktemp("bench")
    suite_file = root / "suite.yaml"
    suite_file.write_text(yaml.safe_dump(SUITE))
    out, cache = root / "out", root / "cache"
    result = CliRunner().invoke(app, ["bench", str(suite_file), "--out", str(out), "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    return {"root": root, "out": out, "cache": cache, "output": result.output, "suite": Suite.model_validate(SUITE)}


def metrics_by_job(results: dict) -> dict:
    """Every number that must not depend on the executor (wall times and dates excluded)."""
    out = {}
    for rec in results["records"]:
        for name, res in rec["report"]["models"].items():
            out[(rec["scenario"], rec["method"], rec["seed"], name)] = (res["metrics"], res["gaps"], res["steps"])
    return out


def cache_state(cache) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in sorted(cache.iterdir())}


def test_results_json_and_terminal_table(serial_run):
    results = json.loads((serial_run["out"] / "results.json").read_text())
    assert results["config_hash"] == serial_run["suite"].config_hash()
    assert set(results["versions"]) >= {"obliviate", "torch", "python"}
    assert len(results["records"]) == 4  # 1 scenario x 2 methods x 2 seeds
    rows = results["summary"]["class3"]
    assert list(rows) == ["original", "retrain", "finetune", "ga"]
    # mean +- std over seeds, by hand from the per-job records
    values = [
        r["report"]["models"]["finetune"]["metrics"]["forget_acc"]
        for r in results["records"]
        if r["method"] == "finetune"
    ]
    stat = rows["finetune"]["metrics"]["forget_acc"]
    assert stat["n"] == 2
    assert stat["mean"] == pytest.approx(np.mean(values)) and stat["std"] == pytest.approx(np.std(values, ddof=1))
    assert rows["retrain"]["gaps"]["forget_acc"]["mean"] == 0.0
    assert "lower" in results["directions"].values() and "reference" in results["directions"].values()
    assert "tiny · class3 · mean ± std over 2 seed(s)" in serial_run["output"]
    assert len(list(serial_run["cache"].glob("original-*.safetensors"))) == 2  # one per seed
    assert len(list(serial_run["cache"].glob("retrain-*.safetensors"))) == 2  # one per scenario and seed


def test_second_run_reuses_results_and_cached_models(serial_run):
    before = cache_state(serial_run["cache"])
    run = run_suite(serial_run["suite"], serial_run["out"], cache_dir=serial_run["cache"])
    assert (run.ran, run.reused) == (0, 4)
    assert cache_state(serial_run["cache"]) == before


class Interrupt(Exception):
    pass


class InterruptedExecutor(SerialExecutor):
    """Stops the run (like Ctrl-C) after ``after`` method jobs have finished."""

    def __init__(self, after: int):
        self.after = after

    def map(self, fn, items, on_result=None):
        def stop_early(i, result):
            on_result(i, result)
            if fn.__name__ == "run_method":
                self.after -= 1
                if self.after == 0:
                    raise Interrupt

        return super().map(fn, items, stop_early)


def test_interrupted_run_resumes_where_it_stopped(serial_run):
    suite = Suite.model_validate({**SUITE, "methods": SUITE["methods"][1:]})  # one method x two seeds
    out = serial_run["root"] / "interrupted"
    before = cache_state(serial_run["cache"])
    with pytest.raises(Interrupt):
        run_suite(suite, out, executor=InterruptedExecutor(after=1), cache_dir=serial_run["cache"])
    assert len(list((out / "jobs").glob("*.json"))) == 1  # the finished job was saved before the stop
    run = run_suite(suite, out, cache_dir=serial_run["cache"])
    assert (run.ran, run.reused) == (1, 1)
    assert cache_state(serial_run["cache"]) == before  # no reference was trained again
    first = metrics_by_job(json.loads((serial_run["out"] / "results.json").read_text()))
    resumed = metrics_by_job(run.results)
    assert resumed == {k: v for k, v in first.items() if k in resumed}  # seeded runs repeat exactly


class ImageCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_report_html_is_self_contained_and_its_plots_decode(serial_run):
    page = (serial_run["out"] / "report.html").read_text()
    parser = ImageCollector()
    parser.feed(page)
    assert len(parser.sources) == 3  # metric-vs-time, per-class accuracy, loss histograms
    for src in parser.sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)  # embedded, nothing to fetch
        image = imread(io.BytesIO(base64.b64decode(src[len(prefix) :])), format="png")
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image[..., :3].std() > 0.01  # not a blank canvas
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "forget_acc" in page and "± " in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(serial_run, tmp_path):
    """Chromium loads the page; a probe script appended to a copy reports each image's decoded width."""
    page = (serial_run["out"] / "report.html").read_text()
    probe = (
        "<script>window.addEventListener('load', () => { document.body.setAttribute('data-widths', "
        "JSON.stringify([...document.images].map(i => i.complete ? i.naturalWidth : -1))); });</script>"
    )
    copy = tmp_path / "probe.html"
    copy.write_text(page.replace("</body>", probe + "</body>"))
    args = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*args, "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120).stdout
    widths = json.loads(dom.split('data-widths="')[1].split('"')[0].replace("&quot;", '"'))
    assert len(widths) == 3 and all(w > 100 for w in widths), widths
    shot = tmp_path / "report.png"
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=1200,2000", copy.as_uri()], capture_output=True, timeout=120
    )
    assert imread(shot)[..., :3].std() > 0.01


LIRA_SUITE = {
    **SUITE,
    "methods": SUITE["methods"][:1],
    "metrics": ["forget_acc", "test_acc", "lira"],
    "metric_options": {"lira": {"shadow_models": 3}},
}


@pytest.fixture(scope="module")
def lira_run(tmp_path_factory):
    """One method, two seeds, LiRA with three shadow models, run serially."""
    root = tmp_path_factory.mktemp("lira")
    suite = Suite.model_validate(LIRA_SUITE)
    run = run_suite(suite, root / "out", cache_dir=root / "cache")
    return {"root": root, "run": run, "suite": suite}


def test_lira_shadows_are_jobs_trained_once_per_seed_and_match_evaluate(lira_run):
    """Shadows are trained by their own jobs (cached, shared by every method of a seed), and give
    exactly the numbers of the metric training its shadows in-process."""
    from obliviate import ForgetSpec, UnlearningTask, evaluate, load_data
    from obliviate.checkpoint import load_model

    cache = lira_run["root"] / "cache"
    assert len(list(cache.glob("lira-shadow-*.npy"))) == 3 * 2  # k shadows x 2 seeds
    record = next(r for r in lira_run["run"].results["records"] if r["seed"] == 1)
    from_jobs = record["report"]["models"]
    assert from_jobs["original"]["metrics"]["lira.shadow_models"] == 3
    cards = {p: load_model(p) for p in cache.glob("original-*.safetensors")}
    (original,) = [model for model, card in cards.values() if card["identity"]["recipe"]["seed"] == 1]
    task = UnlearningTask.build(load_data("digits", seed=0), ForgetSpec(classes=[3]))  # a fresh task: no shadows
    options = {"lira": {"shadow_models": 3, "recipe": lira_run["suite"].recipe.model_dump(mode="json")}}
    direct = evaluate(task, {"original": original}, reference=None, metrics=["lira"], seed=1, options=options).models[
        "original"
    ]
    for key in ("lira.auc", "lira.tpr@1%fpr", "lira.tpr@0.1%fpr"):
        assert from_jobs["original"]["metrics"][key] == pytest.approx(direct.metrics[key], abs=1e-12)
    before = cache_state(cache)
    suite = Suite.model_validate({**LIRA_SUITE, "methods": SUITE["methods"][1:]})  # another method: same shadows
    rerun = run_suite(suite, lira_run["root"] / "other", cache_dir=cache)
    assert rerun.ran == 2 and cache_state(cache) == before


def test_a_corrupt_shadow_file_is_retrained_not_trusted(lira_run):
    cache = lira_run["root"] / "cache"
    job = Job(lira_run["suite"], str(cache), seed=0, shadow=1)
    good = train_lira_shadow(job)
    path = next(p for p in cache.glob("lira-shadow-*.npy") if np.array_equal(np.load(p), good))
    path.write_bytes(b"not an array")
    assert np.array_equal(train_lira_shadow(job), good)  # retrained: the same seeded shadow
    assert np.array_equal(np.load(path), good)


def test_ray_executor_gives_the_serial_numbers(lira_run):
    """Originals, references, LiRA shadows and method runs all on Ray workers."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run = run_suite(
            lira_run["suite"],
            lira_run["root"] / "ray",
            executor=make_executor("ray"),
            cache_dir=lira_run["root"] / "ray-cache",  # its own models and shadows, trained on Ray workers
        )
    finally:
        ray.shutdown()
    assert run.results["executor"] == "ray" and run.ran == 2
    assert len(list((lira_run["root"] / "ray-cache").glob("lira-shadow-*.npy"))) == 3 * 2
    assert metrics_by_job(run.results) == metrics_by_job(lira_run["run"].results)


def test_bad_suites_are_refused_with_clear_errors(tmp_path):
    def variant(**change):
        return {**SUITE, **change}

    with pytest.raises(ValidationError, match="unknown method 'nope'"):
        Suite.model_validate(variant(methods=["nope"]))
    with pytest.raises(ValidationError, match="runner trains these itself"):
        Suite.model_validate(variant(methods=["retrain"]))
    with pytest.raises(ValidationError, match="appear twice"):
        Suite.model_validate(variant(methods=["finetune", "finetune"]))
    with pytest.raises(ValidationError, match="bad config for 'finetune'"):
        Suite.model_validate(variant(methods=[{"name": "finetune", "config": {"epochz": 1}}]))
    with pytest.raises(ValidationError, match="unknown metrics"):
        Suite.model_validate(variant(metrics=["accuracy_of_vibes"]))
    with pytest.raises(ValidationError, match="scenarios"):
        Suite.model_validate({k: v for k, v in SUITE.items() if k != "scenarios"})
    rows = [{"name": "rows", "spec": {"indices": [1, 2, 3]}}]
    with pytest.raises(ValidationError, match="method 'boundary_shrink' cannot serve scenario 'rows' \\(random\\)"):
        Suite.model_validate(variant(methods=["boundary_shrink"], scenarios=rows))
    with pytest.raises(ValidationError, match="method 'blindspot' serves \\['regression'\\] tasks"):
        Suite.model_validate(variant(methods=["blindspot"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        Suite.load(bad)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("dask")
