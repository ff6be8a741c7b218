"""Tampering with a pipeline home: every edit, deletion, reordering, truncation or re-hashing of
the serving pointer, the weights, the cards, the ledger rows and the audit log is caught by
``obliviate pipeline check``, and those that touch what serves are also caught on load.

One home is built once per model kind (v0001, v0002 and v0003 from two requests, a rejected
request, a no-op request, one request still waiting); each scenario alters a copy of it. For a
classifier the requests name rows and a version is one safetensors file; for a causal LM they
name people and a version is a Hugging Face directory, so the weights scenarios edit, swap or
delete files inside it and a few more add or remove files there.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from pipeline_helpers import KINDS, LM_PERMISSIVE, lm_people, pipeline_of

from obliviate.cli import main
from obliviate.pipeline import Pipeline, process
from obliviate.pipeline.audit import sha256_text
from obliviate.pipeline.integrity import check, verify_serving
from obliviate.pipeline.signing import Signer, canonical

GATES = ["random: forget_acc <= 100", "class: forget_acc <= 0"]


# (requester, spec) of the story; carol's batch is refused by the gates, dave's asks again for alice's rows
_PEOPLE = list(lm_people())
STORY = {
    "classifier": [
        ("alice", {"indices": [1, 2]}), ("bob", {"indices": [3, 4, 5]}), ("carol", {"classes": [3]}),
        ("dave", {"indices": [1]}), ("erin", {"indices": [7]}),
    ],
    "causal_lm": [
        ("alice", {"keys": [_PEOPLE[0]]}), ("bob", {"keys": [_PEOPLE[1]]}), ("carol", {"keys": [_PEOPLE[2]]}),
        ("dave", {"keys": [_PEOPLE[0]]}), ("erin", {"keys": [_PEOPLE[3]]}),
    ],
}  # fmt: skip


def _build(home: Path, kind: str, request) -> dict:
    pipe, dataset = pipeline_of(kind, home, request, gates=GATES if kind == "classifier" else LM_PERMISSIVE)
    saved = {"home": home, "kind": kind}
    served = pipe.config
    for (requester, spec), outcome in zip(STORY[kind], ["promoted", "promoted", "rejected", "noop"], strict=False):
        if requester == "carol" and kind == "causal_lm":  # refuse this one batch, as the class gate does above
            pipe.config = served.model_copy(update={"gates": ["forget_loss <= 0"]})
        pipe.submit(dataset, spec, requester)
        assert [o.outcome for o in process(pipe)] == [outcome]
        pipe.config = served
        if requester == "alice":
            saved["pointer_v0002"] = (home / "models" / "SERVING.json").read_text()
    requester, spec = STORY[kind][-1]
    pipe.submit(dataset, spec, requester)
    assert check(pipe) == []
    pipe.close()
    return saved


@pytest.fixture(scope="module")
def homes() -> dict:
    """The built homes by kind, each built once by the first test that asks for it."""
    return {}


@pytest.fixture(params=KINDS)
def base(request, homes, tmp_path_factory) -> dict:
    kind = request.param
    if kind not in homes:
        homes[kind] = _build(tmp_path_factory.mktemp("tamper") / "home", kind, request)
    return homes[kind]


# ----- the alterations -------------------------------------------------------------------------


def _json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data) or data, indent=2))


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def _sql(home: Path, statement: str) -> None:
    with sqlite3.connect(home / "ledger.db") as db:
        assert db.execute(statement).rowcount >= 1, statement


def _log_lines(home: Path) -> list[str]:
    return (home / "audit" / "log.jsonl").read_text().splitlines()


def _write_log(home: Path, lines: list[str]) -> None:
    (home / "audit" / "log.jsonl").write_text("".join(line + "\n" for line in lines))


def _rehash(lines: list[str], signer: Signer | None = None) -> list[str]:
    """What a careful forger does: renumber, relink and re-hash every entry (re-signing with a
    key of their own when given one); only the real key's signatures can give it away."""
    out, prev = [], "0" * 64
    for seq, line in enumerate(lines):
        entry = {k: v for k, v in json.loads(line).items() if k not in ("hash", "mac")}
        entry.update(seq=seq, prev_hash=prev)
        entry["hash"] = prev = sha256_text(canonical(entry))
        entry["mac"] = signer.sign(entry) if signer else json.loads(line).get("mac")
        out.append(canonical(entry))
    return out


def _edit_entry(lines: list[str], i: int) -> list[str]:
    entry = json.loads(lines[i])
    entry["record"]["outcome"] = "noop" if entry["record"]["outcome"] == "rejected" else "rejected"
    lines[i] = canonical(entry)
    return lines


M = "models"
SERVING, OLD = "v0003", "v0002"


def _lm(home: Path) -> bool:
    return (home / M / "v0001").is_dir()


def _model(home: Path, version: str) -> Path:
    """A version's weights file (inside its directory, for a causal LM)."""
    return home / M / version / "model.safetensors" if _lm(home) else home / M / f"{version}.safetensors"


def _copy_version(home: Path, src: str, dst: str, card: bool = False) -> None:
    """Put version ``src``'s model (weights file or whole directory), and its card if asked, in place of ``dst``'s."""
    if _lm(home):
        shutil.rmtree(home / M / dst)
        shutil.copytree(home / M / src, home / M / dst)
    else:
        shutil.copyfile(_model(home, src), _model(home, dst))
    if card:
        shutil.copyfile(_card(home, src), _card(home, dst))


def _card(home: Path, version: str) -> Path:
    return home / M / f"{version}.json"


def _ptr(home: Path) -> Path:
    return home / M / "SERVING.json"


def _weights(home: Path) -> Path:
    return _model(home, SERVING)


# name -> (alteration, whether loading the serving model must refuse it too)
SCENARIOS = {
    # serving pointer
    "pointer: serve v0001 (issue #15)": (lambda h, s: _json(_ptr(h), lambda p: p.update(version="v0001")), True),
    "pointer: serve v0001 with its hash and history": (
        lambda h, s: _json(
            _ptr(h),
            lambda p: p.update(version="v0001", sha256=json.loads(_card(h, "v0001").read_text())["sha256"],
                               history=["v0001"]),
        ),
        True,
    ),
    "pointer: an older signed copy put back": (lambda h, s: _ptr(h).write_text(s["pointer_v0002"]), True),
    "pointer: deleted": (lambda h, s: (_ptr(h)).unlink(), True),
    "pointer: history reordered": (
        lambda h, s: _json(_ptr(h), lambda p: p.update(history=p["history"][::-1])), True),
    "pointer: truncated file": (
        lambda h, s: (_ptr(h)).write_text((_ptr(h)).read_text()[:40]), True),
    # weights
    "weights: serving file edited": (lambda h, s: _flip(_weights(h)), True),
    "weights: v0001 copied over the serving file": (lambda h, s: _copy_version(h, "v0001", SERVING), True),
    "weights: serving file deleted": (lambda h, s: _weights(h).unlink(), True),
    "weights: serving file truncated": (
        lambda h, s: _weights(h).write_bytes(_weights(h).read_bytes()[:100]),
        True,
    ),
    "weights: an older version edited": (lambda h, s: _flip(_model(h, OLD)), False),
    # cards
    "card: v0001 weights and card copied over the serving version (issue #15)": (
        lambda h, s: _copy_version(h, "v0001", SERVING, card=True), True),
    "card: serving forgotten_rows emptied (issue #15)": (
        lambda h, s: _json(_card(h, SERVING), lambda c: c.update(forgotten_rows=[])), True),
    "card: serving metrics edited": (
        lambda h, s: _json(_card(h, SERVING), lambda c: c["metrics"].update(forget_acc=0.0)), True),
    "card: serving card deleted": (lambda h, s: _card(h, SERVING).unlink(), True),
    "card: sha256 re-pointed at swapped weights": (
        lambda h, s: (
            _copy_version(h, "v0001", SERVING),
            _json(_card(h, SERVING), lambda c: c.update(sha256=json.loads(_card(h, "v0001").read_text())["sha256"])),
        ),
        True,
    ),
    "card: sha256 removed": (lambda h, s: _json(_card(h, SERVING), lambda c: c.pop("sha256") and None), True),
    "card: a JSON list": (lambda h, s: _card(h, SERVING).write_text("[1, 2]"), True),
    "card: an older version's forgotten_rows emptied": (
        lambda h, s: _json(_card(h, OLD), lambda c: c.update(forgotten_rows=[])), False),
    # ledger rows
    "ledger: waiting request marked done (issue #15)": (
        lambda h, s: _sql(h, "UPDATE obliviate_requests SET state='done', model_version='v0003' "
                             "WHERE requester='erin'"), False),
    "ledger: done request put back to received": (
        lambda h, s: _sql(h, "UPDATE obliviate_requests SET state='received', batch_id=NULL WHERE requester='bob'"),
        False,
    ),
    "ledger: done request marked failed": (
        lambda h, s: _sql(h, "UPDATE obliviate_requests SET state='failed' WHERE requester='alice'"), False),
    "ledger: rejected request marked done": (
        lambda h, s: _sql(h, "UPDATE obliviate_requests SET state='done', model_version='v0003' "
                             "WHERE requester='carol'"), False),
    "ledger: done request deleted": (
        lambda h, s: _sql(h, "DELETE FROM obliviate_requests WHERE requester='bob'"), False),
    "ledger: done request's spec edited": (
        lambda h, s: _sql(h, """UPDATE obliviate_requests SET spec='{"indices": [3, 4]}' WHERE requester='bob'"""),
        False,
    ),
    "ledger: done request's model version edited": (
        lambda h, s: _sql(h, "UPDATE obliviate_requests SET model_version='v0002' WHERE requester='bob'"), False),
    "ledger: last audit anchor deleted": (
        lambda h, s: _sql(h, "DELETE FROM obliviate_audit_heads WHERE seq = 4"),
        True,
    ),
    "ledger: audit anchor hash edited": (
        lambda h, s: _sql(h, "UPDATE obliviate_audit_heads SET hash='" + "0" * 64 + "' WHERE seq=1"), True),
    # audit log
    "audit: entry edited": (lambda h, s: _write_log(h, _edit_entry(_log_lines(h), 3)), True),
    "audit: entry edited and the chain re-hashed": (
        lambda h, s: _write_log(h, _rehash(_edit_entry(_log_lines(h), 3))), True),
    "audit: whole chain re-hashed and re-signed with another key": (
        lambda h, s: _write_log(h, _rehash(_edit_entry(_log_lines(h), 3), Signer(b"a key of the forger's own"))),
        True,
    ),
    "audit: middle entry deleted": (lambda h, s: _write_log(h, _log_lines(h)[:1] + _log_lines(h)[2:]), True),
    "audit: middle entry deleted and the chain re-hashed": (
        lambda h, s: _write_log(h, _rehash(_log_lines(h)[:1] + _log_lines(h)[2:])), True),
    "audit: last entry deleted": (lambda h, s: _write_log(h, _log_lines(h)[:-1]), True),
    "audit: last entries and their ledger anchors deleted": (
        lambda h, s: (_write_log(h, _log_lines(h)[:-2]), _sql(h, "DELETE FROM obliviate_audit_heads WHERE seq >= 3")),
        False,
    ),
    "audit: entries reordered": (
        lambda h, s: _write_log(h, [_log_lines(h)[i] for i in (0, 2, 1, 3, 4)]), True),
    "audit: log emptied": (lambda h, s: _write_log(h, []), True),
    "audit: log deleted": (lambda h, s: (h / "audit" / "log.jsonl").unlink(), True),
    "audit: last line torn": (lambda h, s: (h / "audit" / "log.jsonl").write_text(
        (h / "audit" / "log.jsonl").read_text()[:-30]), True),
    "audit: a record file edited": (
        lambda h, s: _json(sorted((h / "audit" / "records").glob("*.json"))[0],
                           lambda e: e["record"].update(outcome="edited")),
        False,
    ),
}  # fmt: skip

# only a causal LM's versions are directories
LM_SCENARIOS = {
    "directory: a file added to the serving version": (
        lambda h, s: (h / M / SERVING / "extra.json").write_text("{}"), True),
    "directory: serving tokenizer edited": (
        lambda h, s: (h / M / SERVING / "tokenizer.json").open("a").write(" "), True),
    "directory: a serving file renamed": (
        lambda h, s: (h / M / SERVING / "config.json").rename(h / M / SERVING / "config.json.bak"), True),
    "directory: v0001's weights linked in place of the serving ones": (
        lambda h, s: (_weights(h).unlink(), _weights(h).symlink_to(_model(h, "v0001"))), True),
    "directory: serving version deleted": (lambda h, s: shutil.rmtree(h / M / SERVING), True),
    "directory: an older version's config edited": (
        lambda h, s: _json(h / M / OLD / "config.json", lambda c: c.update(n_layer=2)), False),
}  # fmt: skip
CASES = [(kind, name) for kind in KINDS for name in SCENARIOS] + [("causal_lm", name) for name in LM_SCENARIOS]


def _copy(base: dict, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(base["home"], home)
    return home


def test_untouched_home_checks_clean(base, tmp_path):
    pipe = Pipeline(_copy(base, tmp_path))
    assert check(pipe) == []
    version, _, _ = verify_serving(pipe)
    assert version == SERVING and len(pipe.audit.entries()) == 5 == len(pipe.ledger.anchors())


@pytest.mark.parametrize(("base", "name"), CASES, indirect=["base"])
def test_tampering_is_detected(base, tmp_path, name):
    alter, on_load = {**SCENARIOS, **LM_SCENARIOS}[name]
    home = _copy(base, tmp_path)
    alter(home, base)
    pipe = Pipeline(home)
    problems = check(pipe)
    assert problems, f"pipeline check missed: {name}"
    if on_load:
        with pytest.raises(ValueError):
            verify_serving(pipe)


def test_scenario_count():
    assert len(SCENARIOS) >= 29


def test_process_refuses_a_tampered_home_and_leaves_requests_waiting(base, tmp_path):
    """Issue #15, first finding: with the pointer moved back, the next version must not be built
    from the older model; the waiting request stays received (not running) and nothing is written."""
    home = _copy(base, tmp_path)
    SCENARIOS["pointer: serve v0001 (issue #15)"][0](home, base)
    pipe = Pipeline(home)
    with pytest.raises(ValueError, match="SERVING.json is not validly signed"):
        process(pipe)
    assert [r.state for r in pipe.ledger.list(state="received")] == ["received"]
    assert pipe.registry.versions() == ["v0001", "v0002", "v0003"] and not pipe.ledger.open_batches()


def test_card_without_sha256_does_not_wedge_the_pipeline(base, tmp_path):
    home = _copy(base, tmp_path)
    card = _card(home, SERVING)
    original = card.read_text()
    SCENARIOS["card: sha256 removed"][0](home, base)
    pipe = Pipeline(home)
    for _ in range(2):
        with pytest.raises(ValueError, match="not validly signed"):
            process(pipe)
        assert not pipe.ledger.open_batches()
    card.write_text(original)
    [outcome] = process(pipe)
    assert outcome.outcome == "promoted" and check(pipe) == []


@pytest.mark.parametrize("tampered", [False, True])
def test_cli_pipeline_check(base, tmp_path, monkeypatch, capsys, tampered):
    home = _copy(base, tmp_path)
    if tampered:
        SCENARIOS["ledger: waiting request marked done (issue #15)"][0](home, base)
    monkeypatch.setattr(sys, "argv", ["obliviate", "pipeline", "check", "--home", str(home)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    if tampered:
        assert exit_info.value.code == 1 and "mismatch: request" in out.err
    else:
        assert exit_info.value.code in (0, None) and "pipeline consistent: 3 versions, 5 audit entries" in out.out


def test_audit_key_lives_outside_the_home_with_mode_0600(base):
    key = Path(json.loads((base["home"] / "pipeline.json").read_text())["audit_key_file"])
    assert key.exists() and not key.is_relative_to(base["home"]) and key.stat().st_mode & 0o777 == 0o600
