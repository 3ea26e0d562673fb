"""The HTTP API and web page around a :class:`~augret.serve.Searcher` (FastAPI).

Endpoints:

* ``POST /search``: JSON ``{text, image (base64), task, instruction, k, modality}`` or a
  multipart form with the same fields and the image as a file part →
  ``{"query": {"original", "rewritten", "task", ...}, "hits": [{"id", "rank", "score",
  "text", "modality", "image_url"}], "took_ms"}``.
* ``GET /items/{id}/image``: the image of an *indexed* item, found by id through its pool
  record (the URL never names a file).
* ``GET /healthz``: liveness and what is served.
* ``GET /``: the search page (static HTML/JS/CSS shipped with the package).

Every error is a JSON body ``{"error": {"status", "type", "message"}}``: augret's errors are
mapped once by their ``http_status``; anything unexpected is logged server-side and answered
with a bare 500. Limits: body size, image pixels (in the Searcher), ``k`` (above the cap is a
422, never clamped), text length. An optional API key guards ``/search`` and ``/items``; CORS
is off unless origins are listed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from augret._lazy import require
from augret.data.ids import MODALITIES
from augret.errors import AugretError, ConfigError
from augret.serve.catalog import ID_PATTERN
from augret.serve.config import ServeConfig
from augret.serve.errors import (
    InvalidRequest,
    ItemNotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from augret.serve.images import MEDIA_TYPES, sniff_format
from augret.serve.query import TASK_NAMES, AdhocQuery
from augret.serve.searcher import Searcher

fastapi = require("fastapi", "serve")
responses = require("fastapi.responses", "serve")
require("python_multipart", "serve")  # form parsing (python-multipart)
Request = fastapi.Request

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

_FIELDS = ("text", "image", "task", "instruction", "k", "modality")
_Fields = tuple[dict[str, Any], bytes | None]  # request fields and the image bytes
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


# ---- errors ------------------------------------------------------------------------------
def _error_body(status: int, kind: str, message: str) -> bytes:
    return json.dumps({"error": {"status": status, "type": kind, "message": message}}).encode()


def _error_response(status: int, kind: str, message: str,
                    headers: dict[str, str] | None = None) -> Any:
    return responses.Response(_error_body(status, kind, message), status_code=status,
                              media_type="application/json", headers=headers)


def _install_handlers(app: Any) -> None:
    starlette_exc = require("starlette.exceptions", "serve")

    @app.exception_handler(AugretError)
    async def augret_error(request: Any, exc: AugretError) -> Any:
        status = exc.http_status
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        else:
            log.info("%s %s -> %d: %s", request.method, request.url.path, status, exc)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return _error_response(status, type(exc).__name__, str(exc), headers)

    @app.exception_handler(starlette_exc.HTTPException)
    async def http_error(request: Any, exc: Any) -> Any:
        return _error_response(exc.status_code, "HTTPException", str(exc.detail),
                               getattr(exc, "headers", None))

    @app.exception_handler(require("fastapi.exceptions", "serve").RequestValidationError)
    async def validation_error(request: Any, exc: Any) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(422, "InvalidRequest",
                               f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Any, exc: Exception) -> Any:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return _error_response(500, "InternalError", "internal server error")


# ---- ASGI wrappers -------------------------------------------------------------------------
class _BodyLimit:
    """Refuse request bodies above ``limit`` bytes with a JSON 413.

    A declared ``Content-Length`` above the limit is answered at once (after draining up to
    ``drain`` bytes so that ordinary clients read the answer); a body that grows past the
    limit while streaming raises :class:`PayloadTooLarge` in whoever is reading it.
    """

    def __init__(self, app: Any, limit: int, drain: int = 32 * 1024 * 1024) -> None:
        self.app, self.limit, self.drain = app, limit, drain

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await self._reply(send, 400, "ConfigError", "invalid Content-Length")
                return
            if size > self.limit:
                read = 0
                while read <= self.drain:
                    message = await receive()
                    read += len(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
                await self._reply(send, 413, "PayloadTooLarge",
                                  f"request body of {size:,} bytes; at most {self.limit:,}")
                return
        seen = 0
        limit = self.limit

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body over {limit:,} bytes")
            return message

        await self.app(scope, limited, send)

    @staticmethod
    async def _reply(send: Any, status: int, kind: str, message: str) -> None:
        body = _error_body(status, kind, message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _SecurityHeaders:
    """Adds ``nosniff``, ``no-referrer`` and, on HTML, a strict Content-Security-Policy."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY")]
                if any(k.lower() == b"content-type" and v.startswith(b"text/html")
                       for k, v in headers):
                    extra.append((b"content-security-policy", _CSP.encode()))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


# ---- request parsing ---------------------------------------------------------------------
def _opt_text(fields: dict[str, Any], name: str, limit: int) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InvalidRequest(f"{name} is {len(value):,} characters; at most {limit:,}")
    return value


def _k(value: Any, settings: ServeConfig, *, form: bool) -> int:
    if value is None or (form and value == ""):
        return settings.default_k
    if form and isinstance(value, str):  # form fields are strings; JSON needs a number
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidRequest(f"k must be an integer, got {value[:40]!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"k must be an integer, got {type(value).__name__}")
    if not 1 <= value <= settings.max_k:
        shown = value if abs(value) < 10**12 else "a huge number"
        raise InvalidRequest(f"k must be between 1 and {settings.max_k}, got {shown}")
    return value


def _b64_image(value: Any, settings: ServeConfig) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"image must be a base64 string, got {type(value).__name__}")
    value = _DATA_URL.sub("", value.strip(), count=1)
    if len(value) > settings.max_upload_bytes * 4 // 3 + 4:
        raise PayloadTooLarge(f"image over {settings.max_upload_bytes:,} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image is not valid base64") from None
    if not data:
        raise InvalidRequest("image is empty")
    return data


def _query(fields: dict[str, Any], image: bytes | None, settings: ServeConfig, *,
           form: bool) -> tuple[AdhocQuery, int]:
    unknown = sorted(str(f)[:40] for f in fields if f not in _FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field(s) {unknown}; accepted: {list(_FIELDS)}")
    text = _opt_text(fields, "text", settings.max_text_chars)
    task = _opt_text(fields, "task", 64)
    if task is not None and task not in TASK_NAMES:
        raise InvalidRequest(f"unknown task {task!r}; use one of {list(TASK_NAMES)}")
    modality = _opt_text(fields, "modality", 32)
    if modality is not None and modality not in MODALITIES:
        raise InvalidRequest(f"modality must be one of {list(MODALITIES)}")
    instruction = _opt_text(fields, "instruction", settings.max_text_chars)
    k = _k(fields.get("k"), settings, form=form)
    if (text is None or not text.strip()) and image is None:
        raise InvalidRequest("a query needs text or an image")
    return AdhocQuery(text=text, image=image, task=task, instruction=instruction,
                      modality=modality), k


async def _json_fields(request: Request, settings: ServeConfig) -> _Fields:
    body = await request.body()
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):  # JSON, encoding and int-size errors
        raise ConfigError("the body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise InvalidRequest(f"the body must be a JSON object, got {type(fields).__name__}")
    return fields, _b64_image(fields.get("image"), settings)


async def _form_fields(request: Request, settings: ServeConfig) -> _Fields:
    datastructures = require("starlette.datastructures", "serve")
    form = await request.form(max_files=2, max_fields=len(_FIELDS) + 2,
                              max_part_size=settings.max_body_bytes)
    try:
        fields: dict[str, Any] = {}
        image = None
        for name, value in form.multi_items():
            if name == "file":
                name = "image"
            if name in fields or (name == "image" and image is not None):
                raise InvalidRequest(f"field {name[:40]!r} given twice")
            if isinstance(value, datastructures.UploadFile):
                if name != "image":
                    raise InvalidRequest(f"unexpected file in field {name[:40]!r}")
                image = await value.read(settings.max_upload_bytes + 1)
                if len(image) > settings.max_upload_bytes:
                    raise PayloadTooLarge(f"image over {settings.max_upload_bytes:,} bytes")
                if not image:
                    raise InvalidRequest("the uploaded image is empty")
            elif name == "image":
                image = _b64_image(value, settings)
            else:
                fields[name] = value
        return fields, image
    finally:
        await form.close()


# ---- the app -------------------------------------------------------------------------------
def _static(name: str) -> bytes:
    return resources.files("augret.serve").joinpath("static", name).read_bytes()


def create_app(searcher: Searcher, settings: ServeConfig | None = None) -> Any:
    """The FastAPI app serving ``searcher``.

    Args:
        searcher: The searcher (the app does not close it).
        settings: Limits and access settings.

    Returns:
        A FastAPI application.
    """
    concurrency = require("starlette.concurrency", "serve")
    settings = settings or ServeConfig()
    app = fastapi.FastAPI(title=settings.title, docs_url=None, redoc_url=None,
                          openapi_url=None)
    app.state.searcher = searcher
    app.state.settings = settings
    _install_handlers(app)
    page = _static("index.html")
    assets = {name: _static(name) for name in _STATIC}
    key = settings.api_key.encode() if settings.api_key else None

    def check_key(request: Request) -> None:
        if key is None:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), key):
            raise Unauthorized("a valid API key is required (X-API-Key header or "
                               "Authorization: Bearer)")

    def image_url(item_id: str) -> str:
        return f"/items/{item_id}/image"

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        return responses.Response(page, media_type="text/html; charset=utf-8",
                                  headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Any:
        if name not in assets:
            raise ItemNotFound("no such file")
        return responses.Response(assets[name], media_type=_STATIC[name],
                                  headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", **searcher.describe(), "auth": key is not None,
                "max_k": settings.max_k, "default_k": settings.default_k,
                "max_upload_bytes": settings.max_upload_bytes,
                "tasks": list(TASK_NAMES), "modalities": list(MODALITIES)}

    @app.post("/search")
    async def search(request: Request) -> Any:
        check_key(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        form = ctype == "multipart/form-data"
        if ctype == "application/json" or ctype.endswith("+json"):
            fields, image = await _json_fields(request, settings)
        elif form:
            fields, image = await _form_fields(request, settings)
        else:
            raise UnsupportedMediaType(f"unsupported content type {ctype[:60]!r}; send "
                                       "application/json or multipart/form-data")
        query, k = _query(fields, image, settings, form=form)
        result = await concurrency.run_in_threadpool(searcher.search, query, k)
        return responses.JSONResponse(result.to_dict(image_url))

    @app.get("/items/{item_id}/image")
    def item_image(item_id: str, request: Request) -> Any:
        check_key(request)
        if not ID_PATTERN.fullmatch(item_id):
            raise InvalidRequest("invalid item id: expected <dataset id>:<number>")
        path = searcher.catalog.image_file(item_id)
        fmt = sniff_format(path)
        if fmt is None:
            log.warning("image of %s is not in a servable format: %s", item_id, path)
            raise ItemNotFound(f"the image of item {item_id} cannot be served")
        return responses.FileResponse(path, media_type=MEDIA_TYPES[fmt],
                                      headers={"Cache-Control": "private, max-age=3600"})

    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:
        cors = require("fastapi.middleware.cors", "serve")
        app.add_middleware(cors.CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization"],
                           max_age=600)
    app.add_middleware(_SecurityHeaders)
    return app


def serve(searcher: Searcher, settings: ServeConfig | None = None) -> None:
    """Run the app with uvicorn on ``settings.host:port`` until interrupted."""
    uvicorn = require("uvicorn", "serve")
    settings = settings or ServeConfig()
    app = create_app(searcher, settings)
    log.info("serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                server_header=False, proxy_headers=False)
