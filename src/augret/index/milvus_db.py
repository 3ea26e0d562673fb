"""One Milvus collection as augret reaches it: where it is, its schema, its filters, its errors.

The same :class:`pymilvus.MilvusClient` talks to a Milvus Lite database (a local ``*.db``
path, opened in this process) and to a Milvus server or cluster (``http://HOST:19530``).
A server's token is read from an environment variable (:attr:`Target.token_env`) at connect
time and never stored. Every call goes through :meth:`Collection.call`, which turns
pymilvus's errors into augret's: an unreachable server or a Lite database held by another
process is :class:`~augret.errors.IndexUnavailable` (HTTP 503), a missing collection
:class:`~augret.errors.DataNotFoundError`, anything else :class:`~augret.errors.BackendError`;
each message names the URI and the collection. After an unreachable server the next call
connects afresh, so a service recovers as soon as the server is back; a collection that is
not loaded (e.g. after a Milvus Lite server restarted) is loaded and the call tried once
more.

A collection's fields (:data:`FIELDS`): ``id`` (primary key, the candidate id), ``modality``,
``pools`` (the pools the row belongs to), ``text``, ``image`` (the image path of the pool
record), ``vector`` (L2-normalised float32) and, with text search, ``sparse``: the output of
a BM25 function over ``text``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augret._lazy import require
from augret.errors import AugretError, BackendError, DataNotFoundError, IndexUnavailable

__all__ = [
    "FIELDS",
    "Collection",
    "Target",
    "combine",
    "is_lite",
    "modality_filter",
    "pool_filter",
]

log = logging.getLogger(__name__)

#: The collection's fields, by role.
FIELDS = {"id": "id", "modality": "modality", "pools": "pools", "text": "text",
          "image": "image", "vector": "vector", "sparse": "sparse"}
#: Property keys the build records on the collection.
FINGERPRINT_KEY = "augret.fingerprint"
OWNER_KEY = "augret.owner"
MAX_TEXT_BYTES = 65_535  # Milvus's VARCHAR limit
_NOT_FOUND = 100  # pymilvus ErrorCode.COLLECTION_NOT_FOUND
_NOT_LOADED = 101
_CONNECT_FAILED = 2


def is_lite(uri: str) -> bool:
    """Whether ``uri`` is a Milvus Lite database path rather than a server URL."""
    return "://" not in uri


def pool_filter(pool: str) -> str:
    """The filter expression of one pool's rows."""
    return f"array_contains({FIELDS['pools']}, {json.dumps(pool)})"


def modality_filter(modalities: str | Iterable[str]) -> str:
    """The filter expression of candidates of these modalities (names, checked by the
    caller)."""
    names = [modalities] if isinstance(modalities, str) else list(modalities)
    return f"{FIELDS['modality']} in {json.dumps(names)}"


def combine(*exprs: str | None) -> str:
    """The conjunction of the expressions given (``""``: no filter)."""
    parts = [e for e in exprs if e]
    return " and ".join(f"({e})" for e in parts) if len(parts) > 1 else "".join(parts)


@dataclass(frozen=True)
class Target:
    """Where a collection lives.

    Attributes:
        uri: A server URL, or the path of a Milvus Lite database (absolute).
        collection: The collection name.
        token_env: The environment variable holding a server's token.
        timeout: Seconds one call may take.
    """

    uri: str
    collection: str
    token_env: str = "MILVUS_TOKEN"
    timeout: float = 60.0

    @property
    def lite(self) -> bool:
        """Whether the database is a Milvus Lite file."""
        return is_lite(self.uri)

    def __str__(self) -> str:
        return f"collection {self.collection!r} at {self.uri}"


def _code(exc: BaseException) -> Any:
    code = getattr(exc, "code", None)
    return code() if callable(code) else code


def _unreachable(exc: BaseException) -> bool:
    grpc = require("grpc", "milvus")
    if isinstance(exc, grpc.RpcError):
        return True
    code = _code(exc)
    if code == _CONNECT_FAILED or code in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.DEADLINE_EXCEEDED):
        return True
    text = str(exc)
    return any(s in text for s in ("Fail connecting", "server unavailable", "Retry timeout",
                                   "Open local milvus failed", "StatusCode.UNAVAILABLE"))


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc).strip()


def translate(exc: BaseException, target: Target, action: str) -> AugretError:
    """The augret error of a failed pymilvus call."""
    if isinstance(exc, AugretError):
        return exc
    if _unreachable(exc):
        if target.lite:
            return IndexUnavailable(
                f"cannot open the Milvus Lite database {target.uri} ({action}): "
                f"{_message(exc)}. Milvus Lite lets one process open a database; stop the "
                "other one, or serve the collection from a Milvus server")
        return IndexUnavailable(f"cannot reach {target} ({action}): {_message(exc)}")
    if _code(exc) == _NOT_FOUND:
        return DataNotFoundError(f"{target}: no such collection (dropped, or another "
                                 f"server?) ({action})")
    return BackendError(f"{target}: {action} failed: {_message(exc)}")


class Collection:
    """A connection to one collection, with calls that raise augret errors.

    Args:
        target: Where it is.
        replicas: In-memory replicas to load it with (when it is not loaded yet).

    Raises:
        IndexUnavailable: The server cannot be reached or the Lite database is held by
            another process.
        MissingExtraError: pymilvus (or milvus-lite for a ``*.db`` path) is not installed.
    """

    def __init__(self, target: Target, *, replicas: int = 1) -> None:
        self.target = target
        self.replicas = replicas
        require("pymilvus", "milvus")
        # pymilvus logs each failed call with its traceback on a handler of its own; the
        # errors raised here name the call, URI and collection, so keep only its worst
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        if target.lite:
            require("milvus_lite", "milvus")
            Path(target.uri).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.client = self._connect()
        self._broken = False

    def _connect(self) -> Any:
        pymilvus = require("pymilvus", "milvus")
        token = "" if self.target.lite else os.environ.get(self.target.token_env, "")
        try:
            # dedicated: a channel of its own, which close() really closes (a shared one
            # would keep reconnecting on gRPC's backoff after the server came back)
            return pymilvus.MilvusClient(uri=self.target.uri, token=token,
                                         timeout=self.target.timeout, dedicated=True)
        except Exception as exc:
            raise translate(exc, self.target, "connect") from None

    def _client(self) -> Any:
        """The client; after the server was unreachable, a new one (a fresh channel connects
        at once when the server is back, instead of waiting out gRPC's reconnect backoff)."""
        with self._lock:
            if self._broken:
                old, self.client = self.client, self._connect()
                self._broken = False
                try:
                    old.close()
                except Exception:  # its channel is dead already
                    log.debug("closing the old client of %s failed", self.target,
                              exc_info=True)
            return self.client

    @property
    def name(self) -> str:
        """The collection name."""
        return self.target.collection

    def call(self, action: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<method>(*args, **kwargs)`` (the collection name is not added).

        Raises:
            IndexUnavailable, DataNotFoundError, BackendError: See the module docstring.
        """
        kwargs.setdefault("timeout", self.target.timeout)
        for attempt in (0, 1):
            fn: Callable[..., Any] = getattr(self._client(), method)
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt == 0 and _code(exc) == _NOT_LOADED and method != "load_collection":
                    log.info("%s is not loaded; loading it", self.target)
                    self.load()
                    continue
                error = translate(exc, self.target, action)
                if isinstance(error, IndexUnavailable):
                    self._broken = True
                raise error from None
        raise AssertionError("unreachable")

    def load(self) -> None:
        """Load the collection into memory unless it is loaded (a loaded collection keeps
        its replicas)."""
        state = self.call("ask the load state", "get_load_state", self.name).get("state")
        if getattr(state, "name", str(state)) != "Loaded":
            extra = {"replica_number": self.replicas} if self.replicas > 1 else {}
            self.call("load", "load_collection", self.name, **extra)

    # ---- what the collection is ------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the collection exists."""
        return bool(self.call("look up", "has_collection", self.name))

    def describe(self) -> dict[str, Any]:
        """``describe_collection`` (fields, functions, properties)."""
        return self.call("describe", "describe_collection", self.name)

    def vector_dim(self, info: dict[str, Any] | None = None) -> int | None:
        """The dimension of the vector field (``None``: no such field)."""
        for f in (info or self.describe()).get("fields", []):
            if f.get("name") == FIELDS["vector"]:
                return int((f.get("params") or {}).get("dim", 0)) or None
        return None

    def count(self) -> int:
        """Rows in the collection (strongly consistent)."""
        res = self.call("count", "query", self.name, filter="", output_fields=["count(*)"],
                        consistency_level="Strong")
        return int(res[0]["count(*)"]) if res else 0

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the collection holds (strongly consistent)."""
        if not ids:
            return set()
        res = self.call("look up ids", "query", self.name,
                        filter=f"{FIELDS['id']} in {json.dumps(list(ids))}",
                        output_fields=[FIELDS["id"]], consistency_level="Strong")
        return {str(r[FIELDS["id"]]) for r in res}

    def iter_ids(self, batch: int = 10_000) -> Iterable[str]:
        """Every id in the collection (a query iterator)."""
        it = self.call("list ids", "query_iterator", self.name, batch_size=batch, filter="",
                       output_fields=[FIELDS["id"]])
        try:
            while True:
                rows = it.next()
                if not rows:
                    return
                yield from (str(r[FIELDS["id"]]) for r in rows)
        finally:
            it.close()

    def server_version(self) -> str | None:
        """The server's version string (``None`` when it does not say)."""
        try:
            return str(self.call("ask the version", "get_server_version"))
        except BackendError:
            return None

    def close(self) -> None:
        """Close the client (a Milvus Lite database stays open in this process)."""
        try:
            self.client.close()
        except Exception:  # closing a dead connection
            log.debug("closing %s failed", self.target, exc_info=True)
