"""One exception hierarchy for augret, mapped once to CLI exit codes and HTTP statuses.

Every error raised on purpose by augret derives from :class:`AugretError`. The CLI turns
it into a one-line message and ``exit_code``; the server into a JSON body and ``http_status``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AugretError",
    "BackendError",
    "BadImage",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "ImageTooLarge",
    "IndexUnavailable",
    "MissingExtraError",
    "UnsupportedImage",
    "ValidationFailed",
]


class AugretError(Exception):
    """Base class of every error augret raises on purpose."""

    exit_code: int = 1
    http_status: int = 500


class ConfigError(AugretError):
    """A configuration value, flag or argument is invalid."""

    exit_code = 2
    http_status = 400


class MissingExtraError(AugretError):
    """An optional dependency is not installed; the message names the extra to install."""

    exit_code = 3
    http_status = 501

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"'{module}' is not installed; install it with: pip install 'augret[{extra}]'"
        )


class DataNotFoundError(AugretError):
    """A file or directory the caller named does not exist."""

    exit_code = 4
    http_status = 404


class DataFormatError(AugretError):
    """Input data is malformed. The message names the file, line (when known) and field."""

    exit_code = 5
    http_status = 422

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "")
        if field is not None:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class BadImage(DataFormatError):
    """An image cannot be used: missing, empty, corrupt or truncated, or without pixels."""


class UnsupportedImage(BadImage):
    """The bytes are not an image in a recognised (or accepted) format."""

    http_status = 415


class ImageTooLarge(BadImage):
    """The image has more pixels than may be decoded (e.g. a decompression bomb)."""

    http_status = 413


class BackendError(AugretError):
    """A model backend is unusable (e.g. a server keeps refusing every request)."""

    exit_code = 7
    http_status = 502


class IndexUnavailable(AugretError):
    """An index's database cannot be reached now (a server down, a database held by another
    process); the same call may succeed once it is back."""

    exit_code = 9
    http_status = 503


class ValidationFailed(AugretError):
    """A validation run found errors (the report lists them)."""

    exit_code = 6
    http_status = 422
