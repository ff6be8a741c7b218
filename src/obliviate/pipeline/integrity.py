"""Cross-checks of a pipeline home: ledger, registry and audit log must tell one story.

Each part alone can be altered consistently by whoever can write to it: a pointer moved
back to an older version, a card whose forgotten rows were emptied, a request marked done
in the database, the last audit entries cut off. What gives such edits away is that the
parts record each other: cards and pointer are signed and carry the weights' hash, every
audit entry is signed and its hash is copied into the ledger, each card names the audit
head it was built after, audit records carry the hashes of models, forgotten rows and
request specs, and the ledger says which batch and version served each request.

``verify_serving`` is the load path (cheap: the serving model, the chain and its anchor);
``check`` is ``obliviate pipeline check`` (everything, every version, every request, and the
data file against the fingerprint the first version recorded).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from torch import nn

from obliviate.pipeline.audit import GENESIS, rows_sha256, sha256_text
from obliviate.pipeline.registry import RegistryError
from obliviate.pipeline.signing import IntegrityError, canonical
from obliviate.pipeline.workspace import Pipeline


def spec_sha256(spec: dict) -> str:
    return sha256_text(canonical(spec))


def verify_audit(pipe: Pipeline) -> list[dict]:
    """The audit entries, after checking signatures, links and the ledger's copy of the hashes."""
    result = pipe.audit.verify()
    if not result.ok:
        raise IntegrityError(f"audit log: {result.problem}")
    entries = pipe.audit.entries()
    logged = [(e["seq"], e["hash"]) for e in entries]
    anchored = pipe.ledger.anchors()
    if logged != anchored:
        raise IntegrityError(
            f"audit log has {len(logged)} entries but the ledger recorded {len(anchored)}"
            + ("" if len(logged) != len(anchored) else " with other hashes")
            + " (entries removed, replaced or added outside the pipeline)"
        )
    return entries


def anchor_tail(pipe: Pipeline) -> int:
    """Recovery: anchor signed entries appended just before a crash; returns how many."""
    result = pipe.audit.verify()
    if not result.ok:
        raise IntegrityError(f"audit log: {result.problem}")
    logged = [(e["seq"], e["hash"]) for e in pipe.audit.entries()]
    anchored = pipe.ledger.anchors()
    if logged[: len(anchored)] != anchored:
        raise IntegrityError(f"audit log has {len(logged)} entries but the ledger recorded {len(anchored)} others")
    for seq, hash_ in logged[len(anchored) :]:
        pipe.ledger.anchor(seq, hash_)
    return len(logged) - len(anchored)


def _check_head(version: str, card: dict, entries: list[dict]) -> None:
    head = card.get("audit_head") or {}
    seq, expected = head.get("seq"), head.get("hash")
    if seq == -1:
        actual = GENESIS
    else:
        actual = entries[seq]["hash"] if isinstance(seq, int) and 0 <= seq < len(entries) else None
    if seq is None or (expected or GENESIS) != actual:
        raise IntegrityError(f"model version {version} was built after audit entry {seq}, which the log lacks")


def verify_serving(pipe: Pipeline) -> tuple[str, nn.Module, dict]:
    """Load the serving model after checking it against pointer, card, audit log and ledger."""
    entries = verify_audit(pipe)
    version, model, card = pipe.registry.load_serving()
    promoted = [e["record"] for e in entries if e["record"].get("outcome") == "promoted"]
    if not promoted or promoted[-1].get("model_after") != version:
        last = promoted[-1].get("model_after") if promoted else None
        raise IntegrityError(f"serving {version} but the audit log's last promoted version is {last}")
    if promoted[-1].get("sha256_after") != card.get("sha256"):
        raise IntegrityError(f"model version {version}: weights differ from the ones its audit record names")
    _check_head(version, card, entries)
    return version, model, card


def check(pipe: Pipeline) -> list[str]:
    """Every disagreement between ledger, registry and audit log, one line each (empty: sound)."""
    problems: list[str] = []

    def run(step: Callable[[], None]) -> bool:
        try:
            step()
            return True
        except (IntegrityError, RegistryError, KeyError, TypeError, ValueError, IndexError) as exc:
            problems.append(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
            return False

    entries: list[dict] = []
    cards: dict[str, dict] = {}

    def audit() -> None:
        entries.extend(verify_audit(pipe))
        for entry in entries:
            view = pipe.audit.records / f"{entry['record'].get('batch_id')}.json"
            if view.exists() and json.loads(view.read_text()) != entry:
                problems.append(f"audit record file {view.name} differs from log entry {entry['seq']}")

    def registry() -> None:
        reg = pipe.registry
        ptr = reg.verified_pointer()
        history = ptr["history"]
        if reg.versions() != history:
            raise IntegrityError(f"versions on disk {reg.versions()} are not the promoted ones {history}")
        for i, version in enumerate(history):
            _, card = reg.load(version)
            cards[version] = card
            parent = history[i - 1] if i else None
            if card.get("parent") != parent:
                problems.append(f"model version {version} names parent {card.get('parent')}, history says {parent}")
            before = set(cards[parent]["forgotten_rows"]) if parent else set()
            if set(card["forgotten_rows"]) != before | set(card.get("batch_rows", [])):
                problems.append(f"model version {version}: forgotten rows are not its parent's plus its batch's")
        _, _, serving = reg.load_serving()
        if serving.get("sha256") != reg.sha256(ptr["version"]):
            problems.append("serving weights changed")

    def registry_vs_audit() -> None:
        records = [e["record"] for e in entries if e["record"]["outcome"] == "promoted"]
        by_version = {r.get("model_after"): r for r in records}
        promoted = [r.get("model_after") for r in records]
        if promoted != list(cards):
            problems.append(f"audit log promoted {promoted}, the registry holds {list(cards)}")
        for version, card in cards.items():
            rec = by_version.get(version)
            if rec is None:
                continue
            if rec.get("sha256_after") != card.get("sha256"):
                problems.append(f"model version {version}: weights differ from its audit record")
            if rec["kind"] == "batch" and (
                rec.get("batch_id") != card.get("batch_id")
                or rec.get("request_ids") != card.get("request_ids")
                or rec.get("forgotten_rows_sha256") != rows_sha256(card.get("batch_rows", []))
                or rec.get("model_before") != card.get("parent")
            ):
                problems.append(f"model version {version}: card and audit record disagree on its batch")
            try:
                _check_head(version, card, entries)
            except IntegrityError as exc:
                problems.append(str(exc))
        if pipe.registry.serving() != promoted[-1]:
            problems.append(f"serving {pipe.registry.serving()} but the last promoted version is {promoted[-1]}")

    def ledger_vs_audit() -> None:
        requests = {r.id: r for r in pipe.ledger.list()}
        batches = {e["record"]["batch_id"]: e["record"] for e in entries if e["record"].get("kind") == "batch"}
        for rid, req in requests.items():
            rec = batches.get(req.batch_id)
            if req.state == "done":
                if rec is None or rec["outcome"] not in ("promoted", "noop") or rid not in rec["request_ids"]:
                    problems.append(f"request {rid} is done but no audit record of a served batch lists it")
                elif req.model_version != rec.get("model_after"):
                    made = rec["model_after"]
                    problems.append(f"request {rid} is done with {req.model_version}, its batch made {made}")
            elif req.state == "failed" and (rec is None or rec["outcome"] not in ("rejected", "error")):
                problems.append(f"request {rid} is failed but no audit record of a refused batch lists it")
        for batch_id, rec in batches.items():
            for rid in rec.get("request_ids", []):
                req = requests.get(rid)
                if req is None:
                    problems.append(f"request {rid} of audited batch {batch_id} is missing from the ledger")
                    continue
                spec = rec.get("request_specs_sha256", {}).get(rid)
                if spec != spec_sha256(req.spec):
                    problems.append(f"request {rid}: its spec differs from the one audited in batch {batch_id}")
                if rec["outcome"] in ("promoted", "noop") and (req.state != "done" or req.batch_id != batch_id):
                    problems.append(f"request {rid} was served by batch {batch_id} but the ledger has it {req.state}")
        if registry_ok:
            asked: set = set()
            for req in requests.values():
                if req.state == "done":
                    asked |= pipe.requested_rows(req.spec)
            serving = cards[list(cards)[-1]]
            if set(serving["forgotten_rows"]) != asked:
                gone = len(serving["forgotten_rows"])
                problems.append(f"the serving model forgot {gone} rows, the done requests ask {len(asked)}")

    def data() -> None:
        drift = pipe.data_drift()
        if drift:
            problems.append(drift)

    audit_ok, registry_ok = run(audit), run(registry)
    if registry_ok:
        run(data)
    if audit_ok and registry_ok:  # comparing with a part already found broken only repeats the news
        run(registry_vs_audit)
    if audit_ok:
        run(ledger_vs_audit)
    return problems
