"""A real OpenAI-compatible chat-completions server for tests (FastAPI + uvicorn on loopback).

It wraps any augret :class:`~augret.enhance.backends.base.Backend` (tests use the
``transformers`` backend with a tiny model) and listens on a free port in a background
thread. Faults are injected in-process only: push actions onto :attr:`OpenAICompatServer.faults`
(consumed one per request), set a persistent default, or send an ``x-test-fault`` header.

Fault actions:
    ``ok``               normal generation
    ``<status>``         that HTTP status with a JSON error body (e.g. ``500``, ``503``, ``400``)
    ``429:<seconds>``    429 with ``Retry-After: <seconds>``
    ``sleep:<seconds>``  wait, then answer normally (use it to outlast a client timeout)
    ``close``            abort the TCP connection without answering
    ``malformed``        200 with a body that is not JSON
    ``noshape``          200 with JSON that has no ``choices``
    ``leak:<token>``     normal generation with ``<token>`` inserted in the middle of the text
                         (a server that does not skip special tokens)

:attr:`OpenAICompatServer.rejected_fields` makes the server answer 422 to any request carrying
one of those JSON fields, as a strict server (``transformers serve``) does;
:attr:`ServerStats.bodies` keeps the JSON bodies received.

Standalone use (manual testing against a tiny model)::

    python tests/helpers/openai_server.py --model tiny --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import io
import logging
import socket
import threading
import time
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from augret.enhance.backends.base import Backend, GenerationParams, GenerationRequest

logger = logging.getLogger(__name__)

FAULT_HEADER = "x-test-fault"


class FaultScript:
    """A thread-safe queue of fault actions, one consumed per request, then ``default``."""

    def __init__(self) -> None:
        self._queue: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self.default = "ok"

    def push(self, *actions: str, times: int = 1) -> None:
        """Queue ``actions`` (repeated ``times`` times, in order)."""
        with self._lock:
            for _ in range(times):
                self._queue.extend(actions)

    def clear(self) -> None:
        """Drop queued actions and reset the default to ``ok``."""
        with self._lock:
            self._queue.clear()
            self.default = "ok"

    def next(self) -> str:
        """The action for the next request."""
        with self._lock:
            return self._queue.popleft() if self._queue else self.default


class ServerStats:
    """Counters: requests seen, requests in flight, the most seen in flight at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.actions: list[str] = []
        self.bodies: list[dict[str, Any]] = []

    def enter(self, action: str) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.actions.append(action)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def reset(self) -> None:
        with self._lock:
            self.requests = self.in_flight = self.max_in_flight = 0
            self.actions = []
            self.bodies = []


def _decode_data_url(url: str) -> Image.Image:
    if not url.startswith("data:") or ";base64," not in url:
        raise ValueError("only base64 data: URLs are supported for images")
    data = base64.b64decode(url.split(";base64,", 1)[1])
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def openai_to_request(body: dict[str, Any]) -> tuple[GenerationRequest, GenerationParams]:
    """Turn a chat-completions body back into an augret request (image_url -> image)."""
    image = None
    messages: list[dict[str, Any]] = []
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
            continue
        items: list[dict[str, Any]] = []
        for item in content:
            if item.get("type") == "image_url":
                if image is not None:
                    raise ValueError("at most one image per request")
                image = _decode_data_url(item["image_url"]["url"])
                items.append({"type": "image"})
            elif item.get("type") == "text":
                items.append({"type": "text", "text": item["text"]})
            else:
                raise ValueError(f"unsupported content type {item.get('type')!r}")
        messages.append({"role": message["role"], "content": items})
    budget = body.get("max_completion_tokens") or body.get("max_tokens") or 16
    params = GenerationParams(
        temperature=float(body.get("temperature", 1.0)),
        top_p=float(body.get("top_p", 1.0)),
        seed=int(body.get("seed") or 0),
    )
    return GenerationRequest(messages=messages, image=image, max_new_tokens=int(budget)), params


def _abort_connection(server: uvicorn.Server | None, client: tuple[str, int] | None) -> bool:
    """Abort the TCP connection of ``client`` (uvicorn's h11 protocol keeps its transport)."""
    if server is None or client is None:
        return False
    for connection in list(server.server_state.connections):
        if getattr(connection, "client", None) == tuple(client):
            connection.transport.abort()
            return True
    return False


def create_app(
    backend: Backend,
    model_name: str,
    faults: FaultScript,
    stats: ServerStats,
    server_ref: list[uvicorn.Server],
    rejected_fields: set[str] | None = None,
) -> FastAPI:
    """The FastAPI app: ``/health``, ``/v1/models``, ``/v1/chat/completions``."""
    app = FastAPI()
    generate_lock = threading.Lock()  # backends are not thread-safe

    def _generate(request: GenerationRequest, params: GenerationParams) -> Any:
        with generate_lock:
            return backend.generate([request], params)[0]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(http_request: Request) -> Response:
        action = http_request.headers.get(FAULT_HEADER) or faults.next()
        stats.enter(action)
        try:
            return await _handle(http_request, action)
        finally:
            stats.leave()

    async def _handle(http_request: Request, action: str) -> Response:
        kind, _, arg = action.partition(":")
        if kind == "sleep":
            await asyncio.sleep(float(arg))
        elif kind == "close":
            client = http_request.client
            _abort_connection(
                server_ref[0] if server_ref else None, tuple(client) if client else None
            )
            return Response(status_code=500)  # never reaches the client
        elif kind == "malformed":
            return Response(content=b"{not json", media_type="application/json")
        elif kind == "noshape":
            return JSONResponse({"object": "chat.completion", "id": "x"})
        elif kind == "429":
            return JSONResponse(
                {"error": {"message": "rate limited", "type": "rate_limit"}},
                status_code=429,
                headers={"Retry-After": arg or "0"},
            )
        elif kind.isdigit():
            return JSONResponse(
                {"error": {"message": f"injected {kind}", "type": "injected"}},
                status_code=int(kind),
            )
        elif kind not in ("ok", "leak"):
            return JSONResponse({"error": {"message": f"unknown fault {action!r}"}}, 400)
        try:
            body = await http_request.json()
            stats.bodies.append(body)
            refused = set(body) & (rejected_fields or set())
            if refused:
                return JSONResponse({"detail": f"Unexpected fields in the request: {refused}"},
                                    status_code=422)
            request, params = openai_to_request(body)
        except Exception as exc:
            return JSONResponse({"error": {"message": f"bad request: {exc}"}}, status_code=400)
        result = await asyncio.to_thread(_generate, request, params)
        if not result.ok:
            return JSONResponse({"error": {"message": result.error}}, status_code=400)
        if kind == "leak":
            half = len(result.text) // 2
            result.text = result.text[:half] + arg + result.text[half:]
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": 0,
                    "completion_tokens": result.output_tokens,
                    "total_tokens": result.output_tokens,
                },
            }
        )

    return app


class OpenAICompatServer:
    """The test server, run by uvicorn in a background thread on ``127.0.0.1:<free port>``.

    Use as a context manager; :attr:`base_url` is the ``.../v1`` root for clients.
    """

    def __init__(self, backend: Backend, model_name: str = "tiny", *, port: int = 0) -> None:
        self.backend = backend
        self.model_name = model_name
        self.faults = FaultScript()
        self.stats = ServerStats()
        self.rejected_fields: set[str] = set()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self._server_ref: list[uvicorn.Server] = []
        app = create_app(backend, model_name, self.faults, self.stats, self._server_ref,
                         self.rejected_fields)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._server_ref.append(self._server)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 20.0) -> OpenAICompatServer:
        """Start serving; returns once the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test OpenAI server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """Serve a model over the OpenAI API until interrupted (no fault injection)."""
    from augret.enhance.backends import get_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    backend = get_backend("transformers", args.model)
    with OpenAICompatServer(backend, args.model, port=args.port) as server:
        logger.info("serving %s at %s", args.model, server.base_url)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
