"""The request ledger: every deletion request, its state, and the batch that served it.

State machine: ``received -> scheduled -> running -> done | failed``; ``failed -> received``
on retry. Every transition is one conditional ``UPDATE ... WHERE state = <expected>`` so
two processes can never both move the same request, and a crash leaves each request in
exactly one state. SQLite by default; any SQLAlchemy URL (PostgreSQL) works unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Integer, String, Text, create_engine, event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

STATES = ("received", "scheduled", "running", "done", "failed")
OPEN_STATES = ("scheduled", "running")


class LedgerError(ValueError):
    """A request that does not exist, or a transition the state machine does not allow."""


class ConflictError(LedgerError):
    """A client key reused for a different request."""


class Base(DeclarativeBase):
    pass


class RequestRow(Base):
    __tablename__ = "obliviate_requests"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    client_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    dataset: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict] = mapped_column(JSON)
    requester: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    fail_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditHeadRow(Base):
    """One row per audit-log entry: the ledger's own copy of the chain's hashes, so a log cut
    short (or replaced by an older copy) no longer matches the database beside it."""

    __tablename__ = "obliviate_audit_heads"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Request:
    """A ledger row as plain data (detached from any database session)."""

    id: str
    client_key: str | None
    dataset: str
    spec: dict
    requester: str
    reason: str
    state: str
    fail_reason: str | None
    batch_id: str | None
    model_version: str | None
    attempts: int
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, row: RequestRow) -> Request:
        return cls(
            row.id,
            row.client_key,
            row.dataset,
            row.spec,
            row.requester,
            row.reason,
            row.state,
            row.fail_reason,
            row.batch_id,
            row.model_version,
            row.attempts,
            _iso(row.created_at),
            _iso(row.updated_at),
        )

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _iso(t: datetime) -> str:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat(timespec="milliseconds")


def _now() -> datetime:
    return datetime.now(UTC)


def _canonical(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


class Ledger:
    """The request table behind one SQLAlchemy engine."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite"):
            # A busy timeout instead of immediate "database is locked" under concurrent writers,
            # and WAL so readers never block the processor.
            self.engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def submit(
        self, dataset: str, spec: dict, requester: str, reason: str = "", client_key: str | None = None
    ) -> tuple[Request, bool]:
        """Store a new request; returns it and whether it was created.

        The same ``client_key`` with the same dataset and spec returns the stored request
        (a client may retry safely); with a different one it raises ``ConflictError``.
        """
        now = _now()
        row = RequestRow(
            id=uuid.uuid4().hex,
            client_key=client_key,
            dataset=dataset,
            spec=spec,
            requester=requester,
            reason=reason,
            state="received",
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._session.begin() as s:
                s.add(row)
            return Request.of(row), True
        except IntegrityError:
            if client_key is None:
                raise
        existing = self.by_client_key(client_key)
        if existing is None:  # pragma: no cover - the conflicting row vanished; requests are never deleted
            raise LedgerError(f"client key {client_key!r} collided but no request holds it")
        if existing.dataset != dataset or _canonical(existing.spec) != _canonical(spec):
            raise ConflictError(f"client key {client_key!r} was already used for request {existing.id} with other data")
        return existing, False

    def by_client_key(self, key: str) -> Request | None:
        with self._session() as s:
            row = s.scalar(select(RequestRow).where(RequestRow.client_key == key))
            return Request.of(row) if row else None

    def get(self, request_id: str) -> Request:
        with self._session() as s:
            row = s.scalar(select(RequestRow).where(RequestRow.id == request_id))
            if row is None:
                raise LedgerError(f"no request with id {request_id!r}")
            return Request.of(row)

    def list(self, state: str | None = None, batch_id: str | None = None, limit: int | None = None) -> list[Request]:
        if state is not None and state not in STATES:
            raise LedgerError(f"unknown state {state!r}; states: {', '.join(STATES)}")
        q = select(RequestRow).order_by(RequestRow.seq)
        if state is not None:
            q = q.where(RequestRow.state == state)
        if batch_id is not None:
            q = q.where(RequestRow.batch_id == batch_id)
        if limit is not None:
            q = q.limit(limit)
        with self._session() as s:
            return [Request.of(r) for r in s.scalars(q)]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        with self._session() as s:
            for state in s.scalars(select(RequestRow.state)):
                out[state] += 1
        return out

    def claim(self, limit: int, kind: Callable[[dict], str] | None = None) -> tuple[str, list[Request]]:
        """Move up to ``limit`` of the oldest received requests to ``scheduled`` under a new batch id.

        With ``kind``, only requests whose spec is of the oldest one's kind are taken (the rest
        wait for a later batch). Only rows still ``received`` at UPDATE time are taken, so
        concurrent claimers split the queue instead of sharing it.
        """
        batch_id = uuid.uuid4().hex
        with self._session.begin() as s:
            waiting = s.execute(
                select(RequestRow.id, RequestRow.spec)
                .where(RequestRow.state == "received")
                .order_by(RequestRow.seq)
                .limit(limit if kind is None else limit * 50)
            ).all()
            if kind is not None and waiting:
                first = kind(waiting[0].spec)
                waiting = [w for w in waiting if kind(w.spec) == first]
            ids = [w.id for w in waiting[:limit]]
            if ids:
                s.execute(
                    update(RequestRow)
                    .where(RequestRow.id.in_(ids), RequestRow.state == "received")
                    .values(state="scheduled", batch_id=batch_id, updated_at=_now(), attempts=RequestRow.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
        return batch_id, self.list(batch_id=batch_id)

    def move(self, batch: str, source: str, target: str, **values) -> int:
        """Atomically move every request of ``batch`` in state ``source`` to ``target`` (setting ``values``)."""
        allowed = {("scheduled", "running"), ("running", "done"), ("running", "failed"), ("scheduled", "failed")}
        allowed |= {(s, "received") for s in OPEN_STATES}
        if (source, target) not in allowed:
            raise LedgerError(f"transition {source} -> {target} is not allowed")
        with self._session.begin() as s:
            result = s.execute(
                update(RequestRow)
                .where(RequestRow.batch_id == batch, RequestRow.state == source)
                .values(state=target, updated_at=_now(), **values)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount

    def retry(self, request_id: str) -> Request:
        """Put a failed request back in the queue (its last failure reason is kept until it is processed)."""
        with self._session.begin() as s:
            result = s.execute(
                update(RequestRow)
                .where(RequestRow.id == request_id, RequestRow.state == "failed")
                .values(state="received", batch_id=None, updated_at=_now())
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:
            state = self.get(request_id).state
            raise LedgerError(f"request {request_id} is {state}; only failed requests can be retried")
        return self.get(request_id)

    def anchor(self, seq: int, hash_: str) -> None:
        """Record that the audit log's entry ``seq`` has hash ``hash_`` (idempotent; a different
        hash for a recorded entry is refused)."""
        with self._session.begin() as s:
            row = s.get(AuditHeadRow, seq)
            if row is None:
                s.add(AuditHeadRow(seq=seq, hash=hash_, created_at=_now()))
            elif row.hash != hash_:
                raise LedgerError(f"audit entry {seq} was recorded with another hash")

    def anchors(self) -> list[tuple[int, str]]:
        """Every recorded audit entry as (seq, hash), in order."""
        with self._session() as s:
            return [(r.seq, r.hash) for r in s.scalars(select(AuditHeadRow).order_by(AuditHeadRow.seq))]

    def open_batches(self) -> list[str]:
        """Batch ids that still have scheduled or running requests (interrupted work after a crash)."""
        with self._session() as s:
            q = select(RequestRow.batch_id).where(RequestRow.state.in_(OPEN_STATES)).distinct()
            return [b for b in s.scalars(q) if b is not None]


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
