"""Lazy imports of optional heavy dependencies with an exact install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from augret.errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with the ``pip install 'augret[extra]'`` line.

    Args:
        module: Importable module name, e.g. ``"faiss"``.
        extra: The augret extra that provides it, e.g. ``"index"``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: If the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # the module or one of its own dependencies is missing
        raise MissingExtraError(module, extra) from exc
