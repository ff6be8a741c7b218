"""The audit trail: one JSON + HTML record per processed batch, chained in an append-only log.

Each log line holds the record itself, the hash of the previous line, its own hash (sha256
of the canonical JSON of everything else) and, in a pipeline, an HMAC of all that under the
pipeline's key, so editing, removing or reordering an entry breaks the chain from that entry
on, and re-hashing an edited chain breaks the signatures. Dropping entries from the end keeps
a valid chain, which is why the pipeline also records each new head in the ledger and in the
next model card (see ``obliviate.pipeline.integrity``). The log is rewritten through a
temporary file and a rename, so a crash leaves the old log or the new one, never a torn line.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from obliviate.atomic import atomic_write_text
from obliviate.pipeline.signing import Signer, canonical

GENESIS = "0" * 64


class AuditError(ValueError):
    """An audit record that does not exist or cannot be read."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def rows_sha256(rows) -> str:
    """Hash of a set of row ids or keys (sorted, comma-joined), so the record proves which rows went."""
    return sha256_text(",".join(r if isinstance(r, str) else str(int(r)) for r in sorted(rows)))


@dataclass(frozen=True)
class Verification:
    entries: int
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


class AuditLog:
    """``log.jsonl`` plus ``records/<batch>.json`` and ``.html`` under one folder."""

    def __init__(self, root: str | Path, signer: Signer | None = None):
        self.root = Path(root)
        self.signer = signer
        self.log_path = self.root / "log.jsonl"
        self.records = self.root / "records"
        self.records.mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def has(self, batch_id: str) -> bool:
        return any(e["record"].get("batch_id") == batch_id for e in self.entries())

    def append(self, record: dict) -> dict:
        """Chain ``record`` onto the log and write its JSON and HTML views; returns the entry."""
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        prev = json.loads(lines[-1])["hash"] if lines else GENESIS
        entry = {
            "seq": len(lines),
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "record": record,
            "prev_hash": prev,
        }
        entry["hash"] = sha256_text(canonical(entry))
        if self.signer is not None:
            entry["mac"] = self.signer.sign(entry)
        name = record["batch_id"]
        atomic_write_text(self.records / f"{name}.json", json.dumps(entry, indent=2, allow_nan=True))
        atomic_write_text(self.records / f"{name}.html", render_html(entry))
        atomic_write_text(self.log_path, "\n".join([*lines, canonical(entry)]) + "\n")
        return entry

    def head(self) -> tuple[int, str]:
        """Sequence number and hash of the last entry ((-1, GENESIS) for an empty log)."""
        entries = self.entries()
        return (entries[-1]["seq"], entries[-1]["hash"]) if entries else (-1, GENESIS)

    def clean(self) -> list[Path]:
        """Remove temporary files an interrupted write left behind; returns them."""
        leftovers = [*self.root.glob(".*.tmp"), *self.records.glob(".*.tmp")]
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def record(self, batch_id: str) -> dict:
        """The log entry of one batch, read from the chained log (the files beside it are views)."""
        for entry in self.entries():
            if entry["record"].get("batch_id") == batch_id:
                return entry
        raise AuditError(f"no audit record for batch {batch_id!r}")

    def verify(self) -> Verification:
        """Walk the chain; report the first entry whose hash, link or position does not hold."""
        if not self.log_path.exists():
            return Verification(0)
        prev = GENESIS
        lines = self.log_path.read_text().splitlines()
        for i, line in enumerate(lines):
            try:
                entry = json.loads(line)
                body = {k: v for k, v in entry.items() if k not in ("hash", "mac")}
                stored = entry["hash"]
                link = entry["prev_hash"]
                seq = entry["seq"]
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                return Verification(len(lines), i, f"entry {i} is not a well-formed log entry ({exc})")
            if seq != i:
                return Verification(len(lines), i, f"entry {i} carries sequence number {seq}")
            if link != prev:
                return Verification(len(lines), i, f"entry {i} does not link to the hash of entry {i - 1}")
            if sha256_text(canonical(body)) != stored:
                return Verification(len(lines), i, f"entry {i} was modified (its hash does not match its content)")
            if self.signer is not None and not self.signer.valid(entry):
                return Verification(len(lines), i, f"entry {i} does not carry a valid signature (forged or re-hashed)")
            prev = stored
        return Verification(len(lines))


def render_html(entry: dict) -> str:
    """A self-contained page: the record's fields as tables, no scripts or external files."""
    rec = entry["record"]

    def rows(d: dict) -> str:
        return "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in d.items())

    scalar = {k: v for k, v in rec.items() if not isinstance(v, dict)}
    tables = "".join(
        f"<h2>{html.escape(k)}</h2><table>{rows(v)}</table>" for k, v in rec.items() if isinstance(v, dict)
    )
    chain = {"seq": entry["seq"], "time": entry["time"], "prev_hash": entry["prev_hash"], "hash": entry["hash"]}
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Obliviate audit record {html.escape(str(rec.get('batch_id')))}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "th{text-align:left;padding-right:1em;vertical-align:top}td{font-family:monospace;word-break:break-all}"
        "</style></head><body>"
        f"<h1>Audit record: {html.escape(str(rec.get('kind')))} {html.escape(str(rec.get('outcome', '')))}</h1>"
        f"<table>{rows(scalar)}</table>{tables}<h2>chain</h2><table>{rows(chain)}</table></body></html>\n"
    )


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v))
    return str(v)
