"""Shared pieces of the pipeline tests: a tiny digits pipeline, a tiny causal-LM pipeline, database
URLs, and the invariants that must hold between ledger, registry and audit log after any interruption."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
import torch
from sqlalchemy import create_engine

from obliviate import TrainConfig, build_model, fit, load_data
from obliviate.pipeline import DataSource, Pipeline, PipelineConfig
from obliviate.pipeline.integrity import check
from obliviate.pipeline.ledger import Base

torch.set_num_threads(1)

RECIPE = TrainConfig(epochs=30, lr=3e-3, batch_size=64, seed=0)
PERMISSIVE = ["forget_acc <= 100"]
LM_PERMISSIVE = ["forget_loss >= 0"]
"""Gates every batch passes, for tests of the record rather than of forgetting (a tiny LM's verdict
sits near its thresholds)."""


def database_urls(tmp_path: Path) -> list:
    """SQLite always; PostgreSQL when OBLIVIATE_TEST_POSTGRES_URL names a server (tables reset first)."""
    urls = [f"sqlite:///{tmp_path / 'ledger.db'}"]
    pg = os.environ.get("OBLIVIATE_TEST_POSTGRES_URL")
    if pg:
        engine = create_engine(pg)
        Base.metadata.drop_all(engine)
        engine.dispose()
        urls.append(pg)
    return urls


DB_KINDS = ["sqlite", "postgresql"]


def db_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = os.environ.get("OBLIVIATE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set OBLIVIATE_TEST_POSTGRES_URL to run the ledger against PostgreSQL")
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return url


def config(**over) -> PipelineConfig:
    settings = {
        "dataset": DataSource(name="digits", source="digits"),
        "architecture": "mlp",
        "architecture_kwargs": {"hidden": [32]},
        "recipe": RECIPE,
        "method": "finetune",
        "method_config": {"epochs": 1},
        "metrics": ["forget_acc", "retain_acc", "test_acc", "mia_entropy"],
        "batch_size": 4,
    }
    return PipelineConfig(**{**settings, **over})


@functools.cache
def digits_train():
    return load_data("digits").train


@functools.cache
def _trained() -> dict:
    train = digits_train()
    torch.manual_seed(0)
    model = build_model("mlp", train.input_shape, 10, hidden=[32])
    return fit(model, train, RECIPE).model.state_dict()


def tiny_model():
    """The MLP every test pipeline starts from (trained once per session, copied per use)."""
    model = build_model("mlp", digits_train().input_shape, 10, hidden=[32])
    model.load_state_dict(_trained())
    return model


def new_pipeline(home: Path, **over) -> Pipeline:
    cfg = config(**over)
    return Pipeline.create(home, cfg, None if cfg.mode == "exact" else tiny_model())


LM_TRAINED, LM_NEVER_SEEN = 6, 3
LM_NPO = {"epochs": 10, "lr": 2e-3}  # the NPO defaults are tuned for 100 people, not 10 facts


@functools.cache
def lm_people() -> dict:
    """Keys -> facts of generated people: the first six are trained on, the last three never."""
    from obliviate.llm import generate_profiles

    return generate_profiles(LM_TRAINED + LM_NEVER_SEEN, seed=0)


def build_tiny_lm(root: Path) -> tuple[Path, Path]:
    """A one-layer GPT-2 and word-level tokenizer fine-tuned on the trained people's facts, saved as a
    Hugging Face directory, and the JSONL facts file of all nine people (nothing is downloaded)."""
    from obliviate.llm import LMTrainConfig, finetune, save_causal_lm, tiny_gpt2, train_tokenizer

    people = lm_people()
    rows = [qa for facts in people.values() for qa in facts]
    facts = root / "facts.jsonl"
    fields = ("question", "answer", "key", "paraphrased")
    facts.write_text("".join(json.dumps({**{f: getattr(qa, f) for f in fields}, "perturbed": list(qa.perturbed)}) + "\n"
                             for qa in rows))  # fmt: skip
    texts = [t for qa in rows for t in (qa.question, qa.answer, qa.paraphrased, *qa.perturbed)]
    tokenizer = train_tokenizer(texts)
    model = tiny_gpt2(tokenizer, n_layer=1, n_embd=64, n_head=2, seed=0)
    trained = [qa for key in list(people)[:LM_TRAINED] for qa in people[key]]
    finetune(model, tokenizer, trained, LMTrainConfig(epochs=60, lr=1e-2, batch_size=16))
    return save_causal_lm(root / "model", model, tokenizer), facts


KINDS = ["classifier", "causal_lm"]


def pipeline_of(kind: str, home: Path, request: pytest.FixtureRequest, **over) -> tuple[Pipeline, str]:
    """A new pipeline of ``kind`` (the digits MLP, or the ``tiny_lm`` fixture's model, asked of
    ``request``) and the name its requests give the data set."""
    if kind == "classifier":
        return new_pipeline(home, **over), "digits"
    return new_lm_pipeline(home, request.getfixturevalue("tiny_lm"), **over), "people"


def new_lm_pipeline(home: Path, lm: tuple[Path, Path], **over) -> Pipeline:
    """A causal-LM pipeline serving the tiny GPT-2 of ``build_tiny_lm`` (``lm``: its directory and facts file)."""
    from obliviate.pipeline.lm import load_version

    model_dir, facts = lm
    holdout = list(lm_people())[LM_TRAINED:]
    data = DataSource(name="people", source=str(facts), kind="causal_lm", holdout_keys=holdout)
    cfg = PipelineConfig(**{"dataset": data, "method_config": LM_NPO, "batch_size": 4, **over})
    return Pipeline.create(home, cfg, load_version(model_dir))


def check_consistency(pipe: Pipeline) -> dict:
    """Assert that ledger, registry and audit log tell one story; returns counts per state."""
    ledger, registry, audit = pipe.ledger, pipe.registry, pipe.audit
    requests = ledger.list()
    assert not [r.id for r in requests if r.state in ("scheduled", "running")], "open requests after recovery"
    history = registry.history()
    assert registry.versions() == history, "a version on disk was never promoted (or a promoted one is missing)"
    serving, model, card = registry.load_serving()
    assert serving == history[-1]
    assert registry.sha256(serving) == card["sha256"] == registry.pointer()["sha256"]
    del model
    verification = audit.verify()
    assert verification.ok, verification.problem
    entries = [e["record"] for e in audit.entries()]
    promoted = [e for e in entries if e["outcome"] == "promoted" and e["kind"] == "batch"]
    noops = {e["batch_id"]: e for e in entries if e["outcome"] == "noop"}
    assert sorted(e["model_after"] for e in promoted) == history[1:], "each promoted version has one audit record"
    served_by: dict[str, str] = {}
    for version in history[1:]:
        vcard = registry.card(version)
        for rid in vcard["request_ids"]:
            assert rid not in served_by, f"request {rid} served twice ({served_by.get(rid)} and {version})"
            served_by[rid] = version
    by_id = {r.id: r for r in requests}
    for rid, version in served_by.items():
        assert by_id[rid].state == "done" and by_id[rid].model_version == version
    for r in requests:
        if r.state == "done":
            assert r.id in served_by or r.batch_id in noops, f"request {r.id} is done but no version or record has it"
    expected = set()
    for r in requests:
        if r.state == "done":
            expected |= pipe.requested_rows(r.spec)
    assert set(card["forgotten_rows"]) == expected, "the serving model forgot other rows than the done requests ask"
    assert check(pipe) == [], "obliviate pipeline check finds a mismatch"
    return ledger.counts()
