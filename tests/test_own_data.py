"""Users' own files (image folder, CSV, Parquet, .npz) through fit -> unlearn -> evaluate, by the
Python API and the CLI; forgetting by record key; cumulative forgetting across requests."""

from __future__ import annotations

import csv
import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from obliviate import ForgetSpec, TrainConfig, UnlearningTask, build_model, evaluate, fit, load_data, unlearn
from obliviate.checkpoint import load_model
from obliviate.data import DataError, load_digits, load_image_folder, load_npz, load_table
from obliviate.forget import ForgetSpecError, Forgotten, file_rows

PEOPLE, ROWS_EACH = 60, 4
RECIPE = TrainConfig(epochs=4, optimizer="adam", lr=5e-3, seed=0)


def write_people(path, fmt: str = "csv"):
    """A table of 60 people with 4 rows each: features f1..f3, a label, and a person_id key column."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(PEOPLE * ROWS_EACH, 3)).round(4)
    columns = {
        "person_id": [f"p{i % PEOPLE:02d}" for i in range(len(feats))],
        "f1": feats[:, 0],
        "f2": feats[:, 1],
        "f3": feats[:, 2],
        "label": ((feats[:, 0] + 0.5 * feats[:, 1]) > 0).astype(int),
    }
    if fmt == "csv":
        lines = [",".join(columns)]
        lines += [",".join(str(columns[c][i]) for c in columns) for i in range(len(feats))]
        path.write_text("\n".join(lines) + "\n")
    else:
        pq.write_table(pa.table(columns), path)
    return path


def write_pngs(root, classes=("cat", "dog", "fox"), per_class=10, size=(8, 8), mode="L"):
    rng = np.random.default_rng(1)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = size[::-1] + ((3,) if mode == "RGB" else ())
            pixels = (rng.integers(0, 60, shape) + 90 * label).astype(np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    return {
        "csv": (str(write_people(root / "people.csv")), ["--target", "label", "--key", "person_id"]),
        "parquet": (str(write_people(root / "people.parquet", "parquet")), ["--target", "label", "--key", "person_id"]),
        "folder": (str(write_pngs(root / "pets")), []),
    }


def load(files, name):
    source, opts = files[name]
    return load_data(source, target="label", key="person_id") if opts else load_data(source)


def train_keys(split, n: int) -> list:
    """The first ``n`` distinct record keys of the training rows."""
    return list(dict.fromkeys(split.train.keys.tolist()))[:n]


# ---- loaders ---------------------------------------------------------------------------------


def test_image_folder_classes_shapes_and_path_keys(tmp_path):
    split = load_image_folder(write_pngs(tmp_path / "gray"))
    assert split.train.class_names == ("cat", "dog", "fox")
    assert split.train.input_shape == (1, 8, 8) and len(split.train) + len(split.test) == 30
    for data in (split.train, split.test):
        folders = [k.split("/")[0] for k in data.keys]
        assert folders == [data.class_names[c] for c in data.y.tolist()]
    rgb = load_data(str(write_pngs(tmp_path / "rgb", ("a", "b"), size=(6, 5), mode="RGB")))
    assert rgb.train.input_shape == (3, 5, 6)
    for part in ("train", "test"):
        write_pngs(tmp_path / "split" / part, ("a", "b"), per_class=3 if part == "train" else 2)
    given = load_data(str(tmp_path / "split"))
    assert (len(given.train), len(given.test)) == (6, 4) and given.test.keys[0] == "test/a/000.png"


def test_image_folder_errors_are_one_line(tmp_path):
    write_pngs(tmp_path / "mixed", ("a", "b"))
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "mixed" / "b" / "odd.png")
    with pytest.raises(DataError, match="one size"):
        load_image_folder(tmp_path / "mixed")
    write_pngs(tmp_path / "corrupt", ("a", "b"))
    (tmp_path / "corrupt" / "a" / "000.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_image_folder(tmp_path / "corrupt")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no .png or .jpg"):
        load_data(str(tmp_path / "empty"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_key_column_is_never_a_feature_and_keys_stay_together(tmp_path, fmt):
    path = write_people(tmp_path / f"people.{fmt}", fmt)
    split = load_table(path, "label", key="person_id")
    assert split.train.input_shape == (3,) and split.train.meta["features"] == ["f1", "f2", "f3"]
    assert split.train.class_names == ("0", "1")
    assert len(set(split.train.keys.tolist()) | set(split.test.keys.tolist())) == PEOPLE
    only = load_table(path, "label", features=["f2"], key="person_id")
    assert only.train.input_shape == (1,)
    with pytest.raises(DataError, match="lists the key column"):
        load_table(path, "label", features=["f1", "person_id"], key="person_id")
    with pytest.raises(DataError, match="not numeric"):
        load_table(path, "label")  # person_id would be a feature
    without_key = load_data(str(path), target="label", features=["f1", "f2", "f3"])
    assert without_key.train.keys.dtype.kind == "i"  # row numbers of the file


def test_bad_tables_fail_with_one_line(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b,label\n1,2,0\n3,4\n5,6,1\n")
    missing = tmp_path / "missing.csv"
    missing.write_text("a,b,label\n1,,0\n3,4,1\n")
    for path, target, message in (
        (ragged, "label", "cannot read csv table"),
        (missing, "label", "feature column 'b' has 1 missing values"),
        (missing, "nope", "no target column 'nope'"),
    ):
        with pytest.raises(DataError, match=message) as info:
            load_data(str(path), target=target)
        assert "\n" not in str(info.value)
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="cannot read parquet"):
        load_data(str(bad_parquet), target="label")


def test_npz_images_keys_and_class_names(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, (40, 6, 6), dtype=np.uint8)
    keys = np.array([f"scan-{i}" for i in range(40)])
    np.savez(tmp_path / "scans.npz", X=X, y=np.arange(40) % 2, keys=keys, class_names=np.array(["no", "yes"]))
    split = load_npz(tmp_path / "scans.npz")
    assert split.train.input_shape == (1, 6, 6) and split.train.class_names == ("no", "yes")
    row = int(np.flatnonzero(keys == split.train.keys[0])[0])
    assert torch.equal(split.train.X[0, 0], torch.as_tensor(X[row]).to(split.train.X.dtype))  # unscaled here
    np.savez(tmp_path / "parts.npz", X_train=X[:30], y_train=np.arange(30) % 2, X_test=X[30:], y_test=np.arange(10) % 2,
             keys_train=np.arange(100, 130))  # fmt: skip
    assert load_npz(tmp_path / "parts.npz").train.keys.tolist() == list(range(100, 130))


def test_bad_npz_files_fail_with_one_line(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, X=np.zeros((10, 4), np.float32), y=np.arange(10) % 2)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:-200])
    np.savez(tmp_path / "text.npz", X=np.array([["a", "b"]] * 10), y=np.arange(10) % 2)
    np.savez(tmp_path / "names.npz", X=np.zeros((10, 4)), y=np.arange(10) % 2, class_names=np.arange(2))
    for name, message in (("truncated", "cannot read"), ("text", "inputs must be numbers"), ("names", "class_names")):
        with pytest.raises(DataError, match=message) as info:
            load_data(str(tmp_path / f"{name}.npz"))
        assert "\n" not in str(info.value)
    assert zipfile.is_zipfile(good)


# ---- forgetting by key -----------------------------------------------------------------------


def test_forgetting_keys_removes_exactly_their_rows_of_the_file(files):
    split = load(files, "csv")
    asked = train_keys(split, 2)
    task = UnlearningTask.build(split, ForgetSpec(keys=asked))
    with open(files["csv"][0]) as fh:
        rows = [r for r in csv.DictReader(fh) if r["person_id"] in asked]
    in_file = sorted((float(r["f1"]), float(r["f2"]), float(r["f3"])) for r in rows)
    held_out = split.test.subset(torch.from_numpy(np.flatnonzero(np.isin(split.test.keys, asked))))
    got = sorted(tuple(round(float(v), 4) for v in x) for x in torch.cat([task.forget.X, held_out.X]))
    assert len(rows) == 2 * ROWS_EACH and got == in_file  # every trained-on row of theirs, and nothing else
    assert not set(asked) & set(task.retain.keys.tolist())
    assert sorted(task.forget_keys) == sorted(asked)
    with pytest.raises(ForgetSpecError, match="unknown keys"):
        UnlearningTask.build(split, ForgetSpec(keys=["nobody", "p00x"]))


def test_indices_on_the_command_line_are_file_rows(files):
    split = load_data("digits")
    task = UnlearningTask.build(split, file_rows(ForgetSpec(indices=[0, 1, 2]), split))
    assert task.forget_keys == [0, 1, 2]
    assert torch.equal(task.forget.X, load_digits().X[:3])
    with pytest.raises(ForgetSpecError, match="held-out"):
        UnlearningTask.build(split, file_rows(ForgetSpec(indices=[int(split.test.keys[0])]), split))
    with pytest.raises(ValueError, match="use --keys"):
        file_rows(ForgetSpec(indices=[0]), load(files, "csv"))


# ---- fit -> unlearn -> evaluate ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["csv", "parquet", "folder"])
def test_python_api_end_to_end(files, name):
    split = load(files, name)
    model = fit(build_model("mlp", split.train.input_shape, split.train.num_classes, seed=0), split.train, RECIPE).model
    asked = train_keys(split, 2)
    task = UnlearningTask.build(split, ForgetSpec(keys=asked))
    models = {"original": model}
    for method in ("finetune", "scrub", "amnesiac", "ssd"):
        models[method] = unlearn(model, task, method, seed=0).model
    report = evaluate(task, models, reference=None, metrics=["forget_acc", "retain_acc", "test_acc"])
    assert report.task["forget_keys"] == task.forget_keys and len(task.forget_keys) == 2
    for method in ("finetune", "scrub", "amnesiac"):
        changed = any(
            not torch.equal(a, b) for a, b in zip(model.parameters(), models[method].parameters(), strict=True)
        )
        assert changed and 0 <= report.models[method].metrics["retain_acc"] <= 100
    if name == "folder":  # class forgetting from an image folder, with a class-only method
        fox = UnlearningTask.build(split, ForgetSpec(classes=[2]))
        unlearn(model, fox, "unsir", seed=0, noise_steps=3)


@pytest.mark.parametrize("name", ["csv", "parquet", "folder"])
def test_cli_end_to_end_and_a_second_request(files, name, tmp_path, monkeypatch, capsys):
    source, opts = files[name]
    split = load(files, name)
    first, second = train_keys(split, 2)
    base = tmp_path / "m.safetensors"
    code, out, err = run_cli(monkeypatch, capsys, "train", "--data", source, *opts, "--model", "mlp",
                             "--set", "epochs=3", "--out", base)  # fmt: skip
    assert code == 0, err
    assert load_model(base)[1]["data"]["key"] == ("person_id" if opts else None)
    outs = {}
    for method in ("finetune", "scrub", "amnesiac"):
        outs[method] = tmp_path / f"{method}.safetensors"
        code, out, err = run_cli(monkeypatch, capsys, "forget", "--model", base, "--out", outs[method],
                                 "--method", method, "--keys", first)  # fmt: skip
        assert code == 0, err
        assert "(1 key)" in out
        card = load_model(outs[method])[1]
        assert card["forget_keys"] == [first] and card["forgotten"] == {"keys": [first], "classes": []}
    keys_file = tmp_path / "requests.txt"
    keys_file.write_text(f"{second}\n")
    chained = tmp_path / "chained.safetensors"
    code, out, err = run_cli(monkeypatch, capsys, "forget", "--model", outs["finetune"], "--out", chained,
                             "--keys-file", keys_file, "--set", "epochs=1")  # fmt: skip
    assert code == 0, err
    n_first = int((split.train.keys.astype(str) == first).sum())
    assert f"{n_first} rows forgotten before kept out" in out
    assert load_model(chained)[1]["forgotten"]["keys"] == [first, second]
    report = tmp_path / "report.json"
    models = [f"--model={m}={p}" for m, p in {"original": base, **outs, "chained": chained}.items()]
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", *models, "--cumulative", "--out", report)
    assert code == 0, err
    task = json.loads(report.read_text())["task"]
    assert sorted(map(str, task["forget_keys"])) == sorted([first, second])
    n_second = int((split.train.keys.astype(str) == second).sum())
    assert task["sizes"]["forget"] == n_first + n_second


def test_bad_files_on_the_cli_exit_2_and_write_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2,0\n3,4\n")
    (tmp_path / "text.csv").write_text("name,b,label\nann,2,0\nbob,4,1\n")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04 truncated")
    out = tmp_path / "m.safetensors"
    for args, message in (
        (["--data", tmp_path / "ragged.csv", "--target", "label"], "cannot read csv"),
        (["--data", tmp_path / "text.csv", "--target", "label"], "not numeric"),
        (["--data", tmp_path / "text.csv", "--target", "nope"], "no target column"),
        (["--data", tmp_path / "trunc.npz"], "cannot read"),
        (["--data", "digits", "--key", "id"], "columns of a CSV or Parquet"),
    ):
        code, _, err = run_cli(monkeypatch, capsys, "train", "--out", out, "--model", "mlp", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out.exists() and not out.with_suffix(".json").exists()


# ---- cumulative forgetting -------------------------------------------------------------------


def test_prior_requests_stay_out_of_retain_and_train_views(digits_split):
    first = UnlearningTask.build(digits_split, ForgetSpec(classes=[3]))
    record = first.forgotten
    assert record == Forgotten(classes=[3])
    rows = UnlearningTask.build(digits_split, ForgetSpec(keys=[0, 1, 2]), prior=record)
    assert 3 not in rows.retain.y.tolist() and 3 not in rows.retain_test.y.tolist()
    assert rows.forget_keys == [0, 1, 2] and rows.forgotten == Forgotten(keys=[0, 1, 2], classes=[3])
    view = rows.view(frozenset({"train", "forget"}))
    assert 3 not in view.train.y.tolist() and int(view.train_forget_mask.sum()) == 3
    again = UnlearningTask.build(digits_split, ForgetSpec(classes=[5]), prior=rows.forgotten)
    assert again.forget_classes == [5, 3] and not set(again.retain.keys.tolist()) & {0, 1, 2}
    everything = rows.forgotten.task(digits_split)
    assert len(everything.forget) == int((digits_split.train.y == 3).sum()) + 3
    assert set(everything.forget_test.y.tolist()) == {3}
    with pytest.raises(ForgetSpecError, match="no training row"):
        UnlearningTask.build(digits_split, ForgetSpec(classes=list(range(1, 10))), prior=Forgotten(classes=[0]))


def test_a_second_request_does_not_bring_the_first_back(digits_split):
    model = fit(build_model("mlp", digits_split.train.input_shape, 10, seed=0), digits_split.train, RECIPE).model
    first = UnlearningTask.build(digits_split, ForgetSpec(classes=[3]))
    forgot3 = unlearn(model, first, "amnesiac", seed=0).model

    def class3_acc(m) -> float:
        report = evaluate(first, {"m": m}, reference=None, original=None, metrics=["forget_test_acc"])
        return report.models["m"].metrics["forget_test_acc"]

    accs = {}
    for label, prior in (("with the card", first.forgotten), ("without", None)):
        second = UnlearningTask.build(digits_split, ForgetSpec(keys=[0, 1, 2]), prior=prior)
        accs[label] = class3_acc(unlearn(forgot3, second, "finetune", seed=0).model)
    assert class3_acc(forgot3) <= 5
    assert accs["with the card"] <= 20, accs
    assert accs["without"] >= 50, accs  # the failure the record prevents: finetuning on class 3 restores it


# ---- pipeline requests by key and by file row --------------------------------------------------


def test_pipeline_requests_name_keys_and_file_rows(files, tmp_path, monkeypatch, capsys):
    path = files["parquet"][0]
    home = ["--home", tmp_path / "home"]
    init = ["pipeline", "init", *home, "--data", path, "--name", "people", "--target", "label", "--key", "person_id"]
    options = ["--train-set", "epochs=2", "--set", "epochs=1", "--gate", "forget_acc <= 100", "--metric", "forget_acc"]
    code, _, err = run_cli(monkeypatch, capsys, *init, *options, "--audit-key", tmp_path / "k")
    assert code == 0, err
    submit = ["pipeline", "submit", *home, "--dataset", "people", "--requester", "ann"]
    code, out, err = run_cli(monkeypatch, capsys, *submit, "--keys", "p03,p41")
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, *submit, "--indices", "3")
    assert code == 2 and "use --keys" in err  # the data have a key column
    code, out, err = run_cli(monkeypatch, capsys, "pipeline", "process", *home)
    assert code == 0 and "promoted" in out, out + err
    from obliviate.pipeline import Pipeline

    pipe = Pipeline(tmp_path / "home")
    card = pipe.registry.card(pipe.registry.serving())
    table = pq.read_table(path)
    in_file = sorted(table.column("f1").to_numpy()[np.isin(table.column("person_id").to_numpy(), ["p03", "p41"])])
    train = pipe.split.train
    forgot = train.subset(card["forgotten_rows"])
    held_out = pipe.split.test.subset(np.flatnonzero(np.isin(pipe.split.test.keys, ["p03", "p41"])))
    assert sorted(train.keys[card["forgotten_rows"]].tolist()) == sorted(
        train.keys[np.isin(train.keys, ["p03", "p41"])].tolist()
    )  # exactly the training rows of those keys
    assert sorted(torch.cat([forgot.X, held_out.X])[:, 0].tolist()) == pytest.approx(in_file)
    pipe.close()


def test_pipeline_indices_on_the_command_line_are_file_rows(tmp_path, monkeypatch, capsys):
    home = ["--home", tmp_path / "home"]
    code, _, err = run_cli(monkeypatch, capsys, "pipeline", "init", *home, "--data", "digits", "--train-set",
                           "epochs=1", "--audit-key", tmp_path / "k")  # fmt: skip
    assert code == 0, err
    from obliviate.pipeline import Pipeline

    pipe = Pipeline(tmp_path / "home")
    train_rows = [int(k) for k in pipe.split.train.keys[:3]]  # file rows the model trained on
    held_out = int(pipe.split.test.keys[0])
    submit = ["pipeline", "submit", *home, "--dataset", "digits", "--requester", "ann"]
    code, out, err = run_cli(monkeypatch, capsys, *submit, "--indices", ",".join(map(str, train_rows)))
    assert code == 0, err
    assert pipe.ledger.list()[-1].spec == {"keys": train_rows, "seed": 0}
    code, _, err = run_cli(monkeypatch, capsys, *submit, "--indices", str(held_out))
    assert code == 2 and "unknown keys" in err
    pipe.close()
