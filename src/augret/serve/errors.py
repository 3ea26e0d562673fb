"""Errors of the search service, in augret's hierarchy (each carries its HTTP status).

The app maps :class:`~augret.errors.AugretError` to a JSON error response once, by
``http_status``; these subclasses only add the statuses the service needs. Unusable images
are :class:`~augret.errors.BadImage` and its subclasses, shared with the batch stages.
"""

from __future__ import annotations

from augret.errors import AugretError, ConfigError, DataNotFoundError

__all__ = [
    "InvalidRequest",
    "ItemNotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "UnsupportedMediaType",
]


class InvalidRequest(ConfigError):
    """A request field is missing, of the wrong type or out of range."""

    http_status = 422


class PayloadTooLarge(AugretError):
    """The request body is larger than allowed."""

    exit_code = 2
    http_status = 413


class Unauthorized(AugretError):
    """No valid API key was given."""

    exit_code = 2
    http_status = 401


class ItemNotFound(DataNotFoundError):
    """No indexed item has that id (or it has no image)."""

    http_status = 404


class UnsupportedMediaType(InvalidRequest):
    """The request body is neither JSON nor a multipart form."""

    http_status = 415
