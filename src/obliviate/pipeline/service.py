"""The HTTP service: submit and query deletion requests, list model versions, fetch audit records.

Every endpoint except ``/health`` and the OpenAPI schema needs ``Authorization: Bearer
<token>``. Bodies larger than ``max_body`` bytes are refused with 413 before they are read
in full; bad requests get 4xx with a one-line ``detail`` and store nothing. Processing is
not done here: ``obliviate pipeline process`` serves the queue, so a slow unlearning run
never blocks submissions.
"""

from __future__ import annotations

import hmac
import math
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from obliviate.pipeline.audit import AuditError
from obliviate.pipeline.ledger import STATES, ConflictError, LedgerError
from obliviate.pipeline.registry import RegistryError
from obliviate.pipeline.workspace import Pipeline, RequestError, UnknownDatasetError

MAX_BODY = 1 << 20


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200)
    spec: dict = Field(description="a ForgetSpec: exactly one of classes, subclass, indices, fraction, target_range")
    requester: str = Field(min_length=1, max_length=200)
    reason: str = Field("", max_length=2000)
    client_key: str | None = Field(
        None, min_length=1, max_length=200, description="idempotency key: resubmitting it returns the stored request"
    )


class RequestOut(BaseModel):
    id: str
    client_key: str | None
    dataset: str
    spec: dict
    requester: str
    reason: str
    state: Literal["received", "scheduled", "running", "done", "failed"]
    fail_reason: str | None
    batch_id: str | None
    model_version: str | None
    attempts: int
    created_at: str
    updated_at: str


def finite(obj):
    """JSON has no NaN: metrics that could not be computed are sent as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


class BodyLimit:
    """ASGI middleware refusing bodies over ``limit`` bytes, by header or by counting the stream."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(self.limit)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)


def create_app(home: str | Path, token: str, max_body: int = MAX_BODY) -> FastAPI:
    """The service for one pipeline home; ``token`` is the shared secret clients present."""
    if not token:
        raise ValueError("the service needs a non-empty token")
    pipe = Pipeline(home)
    _ = pipe.split.train, pipe.ledger  # load data and connect once, before the first request
    app = FastAPI(
        title="Obliviate deletion service",
        version="1",
        description="Submit requests to make the served model forget training rows, and follow them.",
    )
    app.add_middleware(BodyLimit, limit=max_body)
    bearer = HTTPBearer(auto_error=False)

    def authorised(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or invalid token", {"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "serving": pipe.registry.serving()}

    @app.post("/requests", status_code=201, response_model=RequestOut, dependencies=auth)
    def submit(body: SubmitBody) -> JSONResponse:
        try:
            req, created = pipe.submit(body.dataset, body.spec, body.requester, body.reason, body.client_key)
        except UnknownDatasetError as exc:
            raise HTTPException(404, str(exc)) from None
        except ConflictError as exc:
            raise HTTPException(409, str(exc)) from None
        except RequestError as exc:
            raise HTTPException(422, str(exc)) from None
        return JSONResponse(req.to_dict(), status_code=201 if created else 200)

    @app.get("/requests/{request_id}", response_model=RequestOut, dependencies=auth)
    def get_request(request_id: str) -> dict:
        try:
            return pipe.ledger.get(request_id).to_dict()
        except LedgerError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/requests", response_model=list[RequestOut], dependencies=auth)
    def list_requests(state: str | None = None, limit: int = 100) -> list[dict]:
        if state is not None and state not in STATES:
            raise HTTPException(422, f"unknown state {state!r}; states: {', '.join(STATES)}")
        if not 1 <= limit <= 10_000:
            raise HTTPException(422, "limit must be between 1 and 10000")
        return [r.to_dict() for r in pipe.ledger.list(state=state, limit=limit)]

    @app.get("/models", dependencies=auth)
    def models() -> dict:
        serving = pipe.registry.serving()
        out = []
        for v in pipe.registry.versions():
            try:
                card = pipe.registry.card(v)
            except RegistryError as exc:
                out.append({"version": v, "error": str(exc)})
                continue
            keep = ("parent", "method", "config", "metrics", "data", "sha256", "created", "batch_id", "architecture")
            out.append({"version": v, "serving": v == serving, **{k: card.get(k) for k in keep}})
        return finite({"serving": serving, "versions": out})

    @app.get("/audit/{batch_id}", dependencies=auth)
    def audit_record(batch_id: str) -> dict:
        try:
            return finite(pipe.audit.record(batch_id))
        except AuditError as exc:
            raise HTTPException(404, str(exc)) from None

    app.state.pipeline = pipe
    return app
