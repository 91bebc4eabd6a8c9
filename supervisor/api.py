"""The HTTP API. Routes parse, call the manager, and shape the answer; nothing more.

Also owns the two guards in front of the routes: ``BodyLimit`` (413 for bodies
over 64 KiB, an ASGI middleware) and the bearer-token check, which asks the
``Token`` it was given. ``create_app`` takes both as arguments; nothing in the
environment or the config switches either off.

``KillPath`` answers the one hot request, a well-formed, authorised
``POST /process/kill``, in raw ASGI: FastAPI's routing, dependency solving and
response-model validation cost about 0.35 ms of a 1.5 ms kill (issue 10 §6). It
takes only requests the route would answer 200 and hands everything else (no or
a wrong token, a body the model rejects, an unknown program) to the FastAPI route
unchanged, so every error answer and the OpenAPI schema stay the route's. Its
answer is the route's ``KillResult``, checked field by field in the tests.
"""

import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import BackgroundTasks, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supervisor.auth import Token
from supervisor.errors import AmbiguousProgram, StartFailed, UnknownProgram
from supervisor.manager import ProcessManager

log = logging.getLogger("supervisor.api")

MAX_BODY = 64 * 1024
_DRAIN_LIMIT = 8 * 1024 * 1024


class Health(BaseModel):
    status: str
    containment: str = Field(
        description='"cgroup" (every program in its own cgroup v2) or "session" (the fallback)'
    )


class Error(BaseModel):
    detail: Any = Field(description="what was wrong (a message, or a list of field errors)")


class ProcessInfo(BaseModel):
    name: str
    state: str
    pid: int | None
    pgid: int | None
    started_at: str | None
    exit_code: int | None
    exit_signal: int | None
    restarts: int
    last_error: str | None
    command: list[str]


class ProcessList(BaseModel):
    processes: list[ProcessInfo]


class NameBody(BaseModel):
    # strict: pydantic's lax mode took {"timeout": true} as 1 s and "2" as 2 s, bodies the
    # published schema calls invalid (a JSON integer for a number stays accepted)
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = Field(default=None, max_length=64)


class KillBody(NameBody):
    timeout: float | None = Field(
        default=None, gt=0, le=300, description="seconds before SIGKILL; default stop_timeout"
    )


class KillResult(BaseModel):
    name: str
    pid: int | None
    already_stopped: bool
    exit_code: int | None
    signal: int | None
    duration_ms: float
    survivors: list[int]


class RestartResult(BaseModel):
    kill: KillResult
    process: ProcessInfo


class Event(BaseModel):
    id: int
    process_id: int | None
    program: str | None
    kind: str | None
    detail: str | None
    created_at: str | None


class EventList(BaseModel):
    events: list[Event]


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "missing or wrong bearer token"},
    404: {"model": Error, "description": "unknown program"},
    413: {"model": Error, "description": "body over 64 KiB"},
    422: {"model": Error, "description": "malformed request"},
}
_START_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": Error, "description": "the program's command cannot be started (the OS error)"},
}
# BodyLimit answers 413 on every route, GETs included, so every route documents it
_HEALTH_ERRORS: dict[int | str, dict[str, Any]] = {413: _ERRORS[413]}


class BodyLimit:
    """Answer 413 for bodies over the limit, before the app sees them."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._drain(receive)
            await self._reject(send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                if more:
                    await self._drain(receive)
                await self._reject(send)
                return
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive) -> None:
        seen = 0
        while seen < _DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.limit} bytes"}).encode()
        await _send_json(send, 413, body)


async def _send_json(send: Send, status: int, body: bytes) -> None:
    """One whole JSON answer in raw ASGI (the guards and ``KillPath`` answer without FastAPI)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class KillPath:
    """``POST /process/kill`` answered without FastAPI when the route would answer 200."""

    PATH = "/process/kill"

    def __init__(self, app: ASGIApp, manager: ProcessManager, token: Token) -> None:
        self.app = app
        self.manager = manager
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        message = await receive()  # BodyLimit, outside, hands over the whole body at once
        asked = self._body(scope, message)
        if asked is not None:
            try:
                answer = await self.manager.kill_async(*asked)
            except (UnknownProgram, AmbiguousProgram):
                pass  # nothing was touched: the route raises it again and answers
            else:
                try:
                    # byte for byte what the route's pydantic serialisation gives for a
                    # KillResult
                    body = json.dumps(
                        answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")
                    ).encode()
                    await _send_json(send, 200, body)
                finally:  # sent or not, the kill is done: its held work is due either way
                    await self.manager.after_answer()
                return

        pending: Message | None = message

        async def replay() -> Message:
            nonlocal pending
            if pending is None:
                return await receive()
            sent, pending = pending, None
            return sent

        await self.app(scope, replay, send)

    def _body(self, scope: Scope, message: Message) -> tuple[str | None, float | None] | None:
        """(name, timeout) when the route would accept the request; None to let it answer."""
        if message["type"] != "http.request" or message.get("more_body", False):
            return None
        authorization = content_type = None
        for key, value in scope["headers"]:  # the first of a repeated header, as Starlette
            if key == b"authorization" and authorization is None:
                authorization = value
            elif key == b"content-type" and content_type is None:
                content_type = value
        if authorization is None:
            return None
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not self.token.allows(credentials):
            return None
        if content_type is not None and _media_type(content_type) != "application/json":
            return None
        raw = message.get("body", b"")
        if not raw:
            return None, None  # the route's body is optional: no body, the only program
        try:
            parsed = KillBody.model_validate_json(raw)
        except ValueError:
            return None
        return parsed.name, parsed.timeout


def _media_type(content_type: bytes) -> str:
    return content_type.decode("latin-1").partition(";")[0].strip().lower()


def create_app(
    manager: ProcessManager,
    token: Token,
    *,
    body_limit: type[BodyLimit] = BodyLimit,
    kill_path: type[KillPath] | None = KillPath,
    manage_lifecycle: bool = True,
) -> FastAPI:
    """The app over ``manager``; ``manage_lifecycle=False`` (schema export) never starts it;
    ``kill_path=None`` leaves every kill to the FastAPI route."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await anyio.to_thread.run_sync(manager.start)
        log.info("event=ready programs=%s", list(manager.programs))
        yield
        if manage_lifecycle:
            await anyio.to_thread.run_sync(manager.shutdown)

    app = FastAPI(
        title="Process supervisor",
        version="1",
        description="Starts programs, stops whole process trees, and answers every kill.",
        lifespan=lifespan,
    )
    if kill_path is not None:  # inside the body limit: it sees whole bodies of 64 KiB at most
        app.add_middleware(kill_path, manager=manager, token=token)
    app.add_middleware(body_limit)
    bearer = HTTPBearer(auto_error=False)

    # async: a sync dependency would cost every request an extra thread-pool hop
    async def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not token.allows(credentials.credentials if credentials else None):
            raise _Unauthorised()

    _add_error_handlers(app, token)
    _add_routes(app, manager, [Depends(authorised)])
    return app


def _unauthorised_detail(token: Token | None) -> str:
    origin = token.origin if token is not None and token.origin else "the supervisor's config"
    return (
        "missing or wrong bearer token; send the header 'Authorization: Bearer <token>'"
        f" with the token from {origin} (SUPERVISOR_TOKEN wins over server.token_file, which"
        " wins over the file generated beside the state DB)"
    )


_NOT_JSON = (
    "request body is not JSON; send a JSON object with the header"
    ' "Content-Type: application/json", e.g. {"name": "worker"}'
)


def _add_error_handlers(app: FastAPI, token: Token | None) -> None:
    unauthorised = {"detail": _unauthorised_detail(token)}

    @app.exception_handler(_Unauthorised)
    async def _unauthorised(request: Request, exc: _Unauthorised) -> JSONResponse:
        return JSONResponse(unauthorised, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if content_type and "json" not in content_type:
            # FastAPI reads a body without a JSON content type as raw bytes, and the error
            # it reports ("valid dictionary") does not say what the client did wrong
            return JSONResponse({"detail": f"{_NOT_JSON}; got Content-Type {content_type!r}"}, 422)
        # FastAPI's own handler echoes the input; a NaN or Infinity in it broke the JSON
        # encoding of the answer and turned a malformed body into a 500
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(StartFailed)
    async def _start_failed(request: Request, exc: StartFailed) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI answers 400 when decoding a body fails other than by JSON syntax (not
            # UTF-8, nested too deep); for us that is a malformed body: 422
            return JSONResponse({"detail": f"request body is not valid JSON: {exc.__cause__}"}, 422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(UnknownProgram)
    async def _unknown(request: Request, exc: UnknownProgram) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(AmbiguousProgram)
    async def _ambiguous(request: Request, exc: AmbiguousProgram) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)


def _add_routes(app: FastAPI, manager: ProcessManager, auth: list[Any]) -> None:
    @app.get("/healthz", response_model=Health, tags=["health"], responses=_HEALTH_ERRORS)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "containment": manager.containment.name}

    @app.get("/processes", response_model=ProcessList, dependencies=auth, responses=_ERRORS)
    async def processes() -> dict[str, Any]:
        return {"processes": [p.snapshot() for p in manager.programs.values()]}

    @app.get("/process", response_model=ProcessInfo, dependencies=auth, responses=_ERRORS)
    async def process(name: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
        return manager.get(name).snapshot()

    @app.post(
        "/process/start", response_model=ProcessInfo, dependencies=auth, responses=_START_ERRORS
    )
    def start(body: NameBody | None = None) -> dict[str, Any]:
        return manager.start_program(body.name if body else None)

    # async: the kill awaits the tree's emptiness on the loop, no thread-pool hop; what the
    # answer does not need (state rows, log lines, removing the cgroup) runs after it is sent
    @app.post("/process/kill", response_model=KillResult, dependencies=auth, responses=_ERRORS)
    async def kill(background: BackgroundTasks, body: KillBody | None = None) -> dict[str, Any]:
        background.add_task(manager.after_answer)
        return await manager.kill_async(body.name if body else None, body.timeout if body else None)

    @app.post(
        "/process/restart",
        response_model=RestartResult,
        dependencies=auth,
        responses=_START_ERRORS,
    )
    def restart(body: NameBody | None = None) -> dict[str, Any]:
        return manager.restart(body.name if body else None)

    @app.get("/events", response_model=EventList, dependencies=auth, responses=_ERRORS)
    def events(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"events": manager.events(limit)}


class _Unauthorised(Exception):
    pass


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as strings, which strict JSON cannot carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value
