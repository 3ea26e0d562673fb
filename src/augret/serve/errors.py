"""Errors of the search service, in augret's hierarchy (each carries its HTTP status).

The app maps :class:`~augret.errors.AugretError` to a JSON error response once, by
``http_status``; these subclasses only add the statuses the service needs.
"""

from __future__ import annotations

from augret.errors import AugretError, ConfigError, DataFormatError, DataNotFoundError

__all__ = [
    "BadImage",
    "ImageTooLarge",
    "InvalidRequest",
    "ItemNotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "UnsupportedImage",
    "UnsupportedMediaType",
]


class InvalidRequest(ConfigError):
    """A request field is missing, of the wrong type or out of range."""

    http_status = 422


class BadImage(DataFormatError):
    """The image bytes cannot be decoded (corrupt, truncated, not an image)."""

    http_status = 422


class UnsupportedImage(DataFormatError):
    """The image is in a format the service does not accept."""

    http_status = 415


class ImageTooLarge(DataFormatError):
    """The image has more pixels than allowed (e.g. a decompression bomb)."""

    http_status = 413


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
