"""Streaming sources (Parquet row groups, image files decoded per batch, uncompressed .npz members)
through fit -> unlearn -> evaluate, against the in-memory path on the same data; per-row metadata
in views."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from obliviate import Dataset, ForgetSpec, TrainConfig, UnlearningTask, build_model, evaluate, fit, load_data, unlearn
from obliviate.checkpoint import load_model
from obliviate.data import DataError, ImageFiles, NpzArray, ParquetColumns, concat, iterate, take

RECIPE = TrainConfig(epochs=3, optimizer="adam", lr=5e-3, batch_size=32, seed=0)
METRICS = ["forget_acc", "retain_acc", "test_acc", "mia_entropy"]  # mia_entropy: per-example outputs


def write_parquet(path, rows: int = 240, row_group_size: int = 120, nulls: bool = False):
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(rows, 4)).astype(np.float32)
    columns = {f"f{i}": feats[:, i] for i in range(4)}
    if nulls:
        columns["f1"] = pa.array([None if i == 7 else float(v) for i, v in enumerate(feats[:, 1])])
    columns["person"] = [f"p{i % 60:02d}" for i in range(rows)]
    columns["label"] = ((feats[:, 0] - feats[:, 2]) > 0).astype(np.int64)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def write_folder(root, per_class: int = 12):
    rng = np.random.default_rng(1)
    for label, name in enumerate(("ant", "bee", "cow")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.integers(0, 80, (6, 5)) + 80 * label).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def write_npz(path, compressed: bool = False):
    rng = np.random.default_rng(2)
    y = np.arange(150) % 3
    X = (rng.integers(0, 90, (150, 5, 5)) + 80 * y[:, None, None]).astype(np.uint8)  # (N, H, W) images
    (np.savez_compressed if compressed else np.savez)(path, X=X, y=y, keys=np.array([f"s{i}" for i in range(150)]))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    return {
        "parquet": (str(write_parquet(root / "t.parquet")), {"target": "label", "key": "person"}),
        "folder": (str(write_folder(root / "animals")), {}),
        "npz": (str(write_npz(root / "d.npz")), {}),
    }


SOURCE_TYPES = {"parquet": ParquetColumns, "folder": ImageFiles, "npz": NpzArray}


def run(split):
    """fit -> unlearn (finetune, scrub) -> evaluate; the models and the metrics."""
    model = fit(build_model("mlp", split.train.input_shape, split.train.num_classes, seed=0), split.train, RECIPE).model
    keys = list(dict.fromkeys(split.train.keys.tolist()))[:2]
    task = UnlearningTask.build(split, ForgetSpec(keys=keys))
    models = {"original": model}
    models["finetune"] = unlearn(model, task, "finetune", seed=0, epochs=2).model
    models["scrub"] = unlearn(model, task, "scrub", seed=0).model
    report = evaluate(task, models, reference=None, metrics=METRICS, seed=0)
    return models, {name: res.metrics for name, res in report.models.items()}


@pytest.mark.parametrize("name", ["parquet", "folder", "npz"])
def test_streamed_sources_match_the_in_memory_path(sources, name):
    path, options = sources[name]
    memory, streamed = (load_data(path, stream=s, **options) for s in (False, True))
    assert isinstance(streamed.train.source, SOURCE_TYPES[name]) and memory.train.in_memory
    assert streamed.train.keys.tolist() == memory.train.keys.tolist()
    assert torch.equal(streamed.train.X, memory.train.X) and torch.equal(streamed.test.X, memory.test.X)
    m_models, m_metrics = run(memory)
    s_models, s_metrics = run(streamed)
    for name in m_models:  # the same batches: only the summation order within a batch may differ
        for p, q in zip(m_models[name].parameters(), s_models[name].parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-4)
    for model, metrics in m_metrics.items():
        for metric, value in metrics.items():
            assert abs(value - s_metrics[model][metric]) <= 1e-3, (model, metric, value, s_metrics[model][metric])


def test_parquet_is_read_one_row_group_at_a_time(tmp_path):
    path = write_parquet(tmp_path / "groups.parquet", rows=400, row_group_size=25)  # 16 row groups
    source = ParquetColumns(path, ["f0", "f1", "f2", "f3"])
    table = pq.read_table(path)
    X = np.stack([table.column(f"f{i}").to_numpy() for i in range(4)], axis=1)
    data = Dataset(source, table.column("label").to_numpy())
    view = data.subset(torch.arange(3, 400, 2))  # a view, as retain sets are
    for seed in range(2):
        batches = list(iterate(view, 32, shuffle=True, generator=torch.Generator().manual_seed(seed)))
        seen = torch.cat([b.index for b in batches])
        assert sorted(seen.tolist()) == list(range(len(view)))  # every row once
        assert seen.tolist() != list(range(len(view)))  # shuffled
        for b in batches:
            assert torch.equal(b.x, torch.from_numpy(X[view.storage_rows()[b.index].numpy()]))
    assert source.reads == 2 * 16  # each row group once per epoch (a plain shuffle would read ~16 per batch)
    rows = np.array([399, 0, 130, 131, 0])  # random access across row groups, repeats, any order
    assert torch.equal(take(data, torch.as_tensor(rows), transform=False).x, torch.from_numpy(X[rows]))


def test_parquet_with_many_row_groups_trains_and_unlearns_like_in_memory(tmp_path):
    path = str(write_parquet(tmp_path / "many.parquet", rows=480, row_group_size=30))
    results = {}
    for stream in (False, True):
        split = load_data(path, target="label", key="person", stream=stream)
        results[stream] = run(split)[1]
    for model in ("original", "finetune", "scrub"):  # another shuffle order, so close rather than equal
        for metric in ("retain_acc", "test_acc"):
            assert abs(results[True][model][metric] - results[False][model][metric]) <= 6, results
    assert results[True]["original"]["test_acc"] >= 80


def test_streaming_rules(sources, tmp_path, monkeypatch):
    npz, folder = sources["npz"][0], sources["folder"][0]
    assert load_data(npz).train.in_memory  # small: in memory by default
    monkeypatch.setenv("OBLIVIATE_STREAM_MB", "0")  # every file larger than 0 MB streams
    assert isinstance(load_data(npz).train.source, NpzArray)
    assert isinstance(load_data(folder).train.source, ImageFiles)
    assert isinstance(load_data(sources["parquet"][0], **sources["parquet"][1]).train.source, ParquetColumns)
    compressed = str(write_npz(tmp_path / "c.npz", compressed=True))
    assert load_data(compressed).train.in_memory  # compressed members are read into memory...
    with pytest.raises(DataError, match="compressed"):
        load_data(compressed, stream=True)  # ...and cannot be streamed
    csv = tmp_path / "t.csv"
    csv.write_text("a,label\n1,0\n2,1\n3,0\n4,1\n5,0\n")
    assert load_data(str(csv), target="label").train.in_memory
    with pytest.raises(DataError, match="convert it to Parquet"):
        load_data(str(csv), target="label", stream=True)
    with pytest.raises(DataError, match="can be streamed"):
        load_data("digits", stream=True)


def test_streamed_bad_files_exit_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OBLIVIATE_STREAM_MB", "0")
    write_parquet(tmp_path / "nulls.parquet", nulls=True)
    write_folder(tmp_path / "odd")
    Image.fromarray(np.zeros((7, 5), np.uint8)).save(tmp_path / "odd" / "ant" / "zz.png")
    write_folder(tmp_path / "cut")
    png = tmp_path / "cut" / "bee" / "03.png"
    png.write_bytes(png.read_bytes()[:60])  # the header reads, the pixels do not: found when a batch decodes it
    out = tmp_path / "m.safetensors"
    for args, message in (
        (["--data", tmp_path / "nulls.parquet", "--target", "label", "--key", "person"], "missing values"),
        (["--data", tmp_path / "odd"], "one size"),
        (["--data", tmp_path / "cut"], "cannot read image"),
    ):
        code, _, err = run_cli(monkeypatch, capsys, "train", "--out", out, "--model", "mlp", "--set", "epochs=1", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists()


def test_streamed_sources_on_the_command_line(sources, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OBLIVIATE_STREAM_MB", "0")
    path, options = sources["parquet"]
    base, forgot = tmp_path / "m.safetensors", tmp_path / "f.safetensors"
    data = ["--data", path, "--target", "label", "--key", "person"]
    code, _, err = run_cli(monkeypatch, capsys, "train", *data, "--model", "mlp", "--set", "epochs=2", "--out", base)
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "forget", "--model", base, "--keys", "p01,p02", "--method",
                             "finetune", "--set", "epochs=1", "--out", forgot)  # fmt: skip
    assert code == 0, err
    report = tmp_path / "r.json"
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", f"--model=f={forgot}", "--keys", "p01,p02", "--out", report)
    assert code == 0, err
    split = load_data(path, **options)
    expected = int(np.isin(split.train.keys, ["p01", "p02"]).sum())
    assert json.loads(report.read_text())["task"]["sizes"]["forget"] == expected
    assert load_model(forgot)[1]["forgotten"]["keys"] == ["p01", "p02"]


def test_per_row_meta_follows_the_rows():
    X, y = torch.randn(12, 3), torch.arange(12) % 2
    weights = np.linspace(0, 1, 12)
    data = Dataset(X, y, meta={"weight": weights, "age": torch.arange(12) * 10, "features": ["a", "b", "c"]})
    view = data.subset([5, 0, 7])
    assert view.meta["weight"].tolist() == weights[[5, 0, 7]].tolist()
    assert view.meta["age"].tolist() == [50, 0, 70] and view.meta["features"] == ["a", "b", "c"]
    task = UnlearningTask.build((data, data.subset([0, 1])), ForgetSpec(indices=[2, 3]))
    assert task.forget.meta["age"].tolist() == [20, 30] and len(task.retain.meta["weight"]) == 10
    joined = concat([data.subset([1]), data.subset([4, 3])])
    assert joined.meta["age"].tolist() == [10, 40, 30] and joined.meta["features"] == ["a", "b", "c"]
    assert data.meta["weight"] is weights  # the whole data set keeps its arrays
