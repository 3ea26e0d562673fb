"""augret: reasoning-augmented multimodal retrieval.

A VLM rewrites queries and captions the corpus; a UniIR-compatible retriever is trained on the
enhanced text; M-BEIR and users' own collections are indexed, searched and evaluated.
"""

from augret.errors import (
    AugretError,
    ConfigError,
    DataFormatError,
    DataNotFoundError,
    MissingExtraError,
    ValidationFailed,
)

__version__ = "0.1.0"

__all__ = [
    "AugretError",
    "ConfigError",
    "DataFormatError",
    "DataNotFoundError",
    "MissingExtraError",
    "ValidationFailed",
    "__version__",
]
