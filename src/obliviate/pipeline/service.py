"""The HTTP service: submit and query deletion requests, list model versions, fetch audit records.

Every endpoint except ``/health`` and the OpenAPI schema needs ``Authorization: Bearer
<token>``. Bodies larger than ``max_body`` bytes are refused with 413 before they are read
in full; bad requests get 4xx with a one-line ``detail`` and store nothing. Processing is
not done here: ``obliviate pipeline process`` serves the queue, so a slow unlearning run
never blocks submissions.
"""

import hmac
import math
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, create_model
from starlette.responses import JSONResponse

from obliviate.forget import ForgetSpec
from obliviate.pipeline.audit import AuditError
from obliviate.pipeline.ledger import STATES, ConflictError, LedgerError
from obliviate.pipeline.registry import RegistryError
from obliviate.pipeline.workspace import Pipeline, RequestError

MAX_BODY = 1 << 20
PUBLIC = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


def spec_model(pipe: Pipeline):
    """The ``spec`` field's type: one small model per ForgetSpec selector, bounded by the served
    data (row and class ids), so the OpenAPI schema says exactly what may be sent and
    schema-driven clients and fuzzers produce requests the handlers act on. A causal LM is
    asked by key only."""
    most = pipe.config.max_rows_per_request
    config = ConfigDict(extra="forbid")
    keys = (list[Text | Int64], Field(min_length=1, max_length=most))
    if pipe.config.is_lm:
        return create_model("KeysSpec", __config__=config, seed=(Int64, 0), keys=keys)
    rows, outputs = len(pipe.split.train), pipe.split.train.num_outputs
    row = Annotated[int, Field(ge=0, lt=rows)]
    fields = {
        "classes": (list[Annotated[int, Field(ge=0, lt=max(outputs, 1))]], Field(min_length=1, max_length=outputs)),
        "subclass": (tuple[Int64, Int64], ...),
        "keys": keys,
        "indices": (list[row], Field(min_length=1, max_length=most)),
        "fraction": (float, Field(gt=0, lt=1, allow_inf_nan=False)),
        "target_range": (tuple[Finite, Finite], ...),
        "time_window": (tuple[Finite, Finite], ...),
        "series_ids": (list[Int64], Field(min_length=1, max_length=most)),
    }
    assert set(fields) == set(ForgetSpec.model_fields) - {"seed"}, "the service schema must cover every selector"
    members = [
        Annotated[
            create_model(f"{name.title().replace('_', '')}Spec", __config__=config, seed=(Int64, 0), **{name: f}),
            Tag(name),
        ]
        for name, f in fields.items()
    ]
    message = f"set exactly one of {', '.join(fields)}"
    return Annotated[
        members[0] | members[1] | members[2] | members[3] | members[4] | members[5] | members[6] | members[7],
        Discriminator(_selector, custom_error_type="spec_selector", custom_error_message=message),
    ]


def _selector(value) -> str | None:
    """The one selector a spec sets (None, a validation error, when it sets none or several)."""
    names = set(ForgetSpec.model_fields) - {"seed"}
    given = value if isinstance(value, dict) else {k: getattr(value, k, None) for k in names}
    chosen = [k for k in names if given.get(k) is not None]
    return chosen[0] if len(chosen) == 1 else None


def submit_body(pipe: Pipeline) -> type[BaseModel]:
    """The POST /requests body for this pipeline: ``dataset`` is the served data set's name."""
    return create_model(
        "SubmitBody",
        __config__=ConfigDict(extra="forbid"),
        dataset=(Literal[pipe.config.dataset.name], Field(description="the data set the rows belong to")),
        spec=(spec_model(pipe), Field(description="what to forget: exactly one selector (ForgetSpec)")),
        requester=(str, Field(min_length=1, max_length=200)),
        reason=(str, Field("", max_length=2000)),
        client_key=(
            str | None,
            Field(
                None, min_length=1, max_length=200, description="idempotency key: resubmitting returns the stored one"
            ),
        ),
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


class Guard:
    """ASGI middleware run before any route: the token is checked before a byte of the body is
    read, and the body (chunked or not) is read in full up to ``limit`` bytes, else 413."""

    def __init__(self, app, token: str, limit: int):
        self.app, self.token, self.limit = app, token.encode(), limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if scope["path"] not in PUBLIC and not self._authorised(headers.get(b"authorization", b"")):
            deny = {"WWW-Authenticate": "Bearer"}
            return await JSONResponse({"detail": "missing or invalid token"}, 401, deny)(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(self.limit)(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await _too_large(self.limit)(scope, receive, send)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)

    def _authorised(self, header: bytes) -> bool:
        scheme, _, credentials = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """One line naming the first problem; the input itself is never echoed (it may be NaN or
    a lone surrogate, which JSON cannot carry back)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    return JSONResponse({"detail": f"invalid {where}: {first.get('msg', 'invalid value')}"}, status_code=422)


def create_app(home: str | Path, token: str, max_body: int = MAX_BODY) -> FastAPI:
    """The service for one pipeline home; ``token`` is the shared secret clients present."""
    if not token:
        raise ValueError("the service needs a non-empty token")
    pipe = Pipeline(home)
    _ = pipe.facts if pipe.config.is_lm else pipe.split.train, pipe.ledger  # load and connect before the first request
    app = FastAPI(
        title="Obliviate deletion service",
        version="1",
        description="Submit requests to make the served model forget training rows, and follow them.",
    )
    app.add_middleware(Guard, token=token, limit=max_body)
    app.add_exception_handler(RequestValidationError, _invalid)
    bearer = HTTPBearer(auto_error=False)
    Body = submit_body(pipe)

    def authorised(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or invalid token", {"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorised)]

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "serving": pipe.registry.serving()}

    @app.post("/requests", status_code=201, response_model=RequestOut, dependencies=auth)
    def submit(body: Body) -> JSONResponse:
        spec = body.spec.model_dump()
        try:
            req, created = pipe.submit(body.dataset, spec, body.requester, body.reason, body.client_key)
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
    def list_requests(
        state: Literal[STATES] | None = None, limit: Annotated[int, Field(ge=1, le=10_000)] = 100
    ) -> list[dict]:
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
