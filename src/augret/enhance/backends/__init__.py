"""Generation backends behind one protocol, chosen by name.

>>> backend = get_backend("transformers", "tiny")  # doctest: +SKIP
>>> backend = get_backend("openai", "Qwen/Qwen3-VL-8B-Instruct",
...                       base_url="http://localhost:8000/v1")  # doctest: +SKIP

Each backend's module (and its heavy dependencies) is imported only when it is requested; a
missing dependency raises :class:`~augret.errors.MissingExtraError` with the exact
``pip install 'augret[...]'`` line.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from augret import errors
from augret.enhance.backends.base import (
    Backend,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "GenerationParams",
    "GenerationRequest",
    "GenerationResult",
    "backend_options",
    "get_backend",
]

# name -> (module, class, extra that provides its dependencies)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "transformers": (
        "augret.enhance.backends.transformers_backend",
        "TransformersBackend",
        "enhance",
    ),
    "openai": ("augret.enhance.backends.openai_backend", "OpenAIBackend", "enhance"),
    "vllm": ("augret.enhance.backends.vllm_backend", "VLLMBackend", "vllm"),
    # a deterministic stand-in with fault injection, for tests and benchmarks
    "fake": ("augret.enhance.backends.fake", "FakeBackend", "enhance"),
    # a simulated perfect VLM: answers from ground-truth records (no model)
    "reference": ("augret.enhance.backends.reference", "ReferenceBackend", "enhance"),
}

#: The registered backend names.
BACKENDS: tuple[str, ...] = tuple(_REGISTRY)


def _options(cls: type) -> list[str]:
    return [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def backend_options(name: str) -> list[str]:
    """The keyword options the backend ``name`` accepts (imports its module).

    Raises:
        ConfigError: Unknown backend.
        MissingExtraError: Its dependencies are not installed.
    """
    if name not in _REGISTRY:
        raise errors.ConfigError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    module_name, class_name, extra = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.MissingExtraError(exc.name or module_name, extra) from exc
    return _options(getattr(module, class_name))


def get_backend(name: str, model: str, **options: Any) -> Backend:
    """Create the backend ``name`` for ``model``.

    Args:
        name: ``transformers``, ``openai``, ``vllm``, ``fake`` or ``reference`` (exact names,
            no guessing; ``fake`` is :class:`~augret.enhance.backends.fake.FakeBackend`, for
            tests; ``reference`` answers from ground-truth records, with no model).
        model: A hub id, a local path, or a tiny preset (``tiny``, ``tiny-qwen2-vl``,
            ``tiny-qwen2.5-vl``, ``tiny-qwen3-vl``); for ``openai``, the name the server
            knows; for ``reference``, its records file
            (:mod:`augret.enhance.backends.reference`).
        **options: Backend keyword options (e.g. ``batch_size``, ``base_url``, ``revision``).

    Returns:
        A ready :class:`Backend`.

    Raises:
        ConfigError: If ``name`` is unknown or an option is not accepted by the backend.
        MissingExtraError: If the backend's optional dependencies are not installed.
    """
    if name not in _REGISTRY:
        raise errors.ConfigError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    module_name, class_name, extra = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except errors.MissingExtraError:
        raise
    except ImportError as exc:
        raise errors.MissingExtraError(exc.name or module_name, extra) from exc
    cls = getattr(module, class_name)
    accepted = _options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise errors.ConfigError(
            f"backend {name!r} does not accept option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join(accepted)}"
        )
    return cls(model, **options)
