"""Typed stage configs: dataclass defaults, a YAML file overlaid on them, CLI values on top.

Every stage config is a frozen dataclass named ``*Config`` in ``<stage>/config.py``; its
fields are declared with :func:`option`, which puts the help text and the hash relevance on
the field. Unknown keys are errors (with the list of valid ones); values are checked against
the field types and by each class's ``__post_init__`` (raising
:class:`~augret.errors.ConfigError`); the resolved config is written next to every output
(:func:`write_resolved`) and its hash (:func:`config_hash`) decides whether a stage's earlier
output can be reused.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from augret.errors import ConfigError, DataNotFoundError
from augret.formats.fingerprint import stable_hash

__all__ = [
    "check_choices",
    "check_min",
    "config_hash",
    "config_to_dict",
    "hash_values",
    "load_config",
    "option",
    "read_yaml",
    "write_resolved",
]

T = TypeVar("T")

#: A field's hash relevance: ``True`` (part of every hash of its config), ``False`` (of none),
#: or the scopes whose hashes include it (see :func:`hash_values`).
HashRule = bool | tuple[str, ...]


def option(default: Any = dataclasses.MISSING, *, help: str, hash: HashRule = True,
           factory: Callable[[], Any] | None = None, hash_if_changed: bool = False) -> Any:
    """A config field with its help text and hash relevance in the field's metadata.

    Args:
        default: The default value (omit it, and ``factory``, for a required field).
        help: One or two sentences for ``--help`` and readers of the class.
        hash: Whether the field changes what the stage produces: ``True`` (default),
            ``False`` (e.g. workers, device, progress), or a tuple of scopes (a hash taken
            for one of them includes the field, others leave it out).
        factory: A default factory, for mutable defaults and nested configs.
        hash_if_changed: Hash the field only when it differs from its default: for a field
            added after stage records were written, whose default keeps the old behaviour,
            so that those records stay valid.
    """
    meta = {"help": help, "hash": hash, "hash_if_changed": hash_if_changed}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_min(cfg: Any, minimum: float, *names: str) -> None:
    """Raise :class:`ConfigError` unless each named field (``None`` aside) is ``>= minimum``."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < minimum:
            raise ConfigError(f"{name} must be >= {minimum:g}, got {value!r}")


@functools.cache
def _choices(cls: type) -> dict[str, tuple[Any, ...]]:
    """``{field: allowed values}`` of the ``Literal``-typed fields of a config class."""
    out = {}
    for name, tp in typing.get_type_hints(cls).items():
        args = [tp] if typing.get_origin(tp) is typing.Literal else [
            a for a in typing.get_args(tp) if typing.get_origin(a) is typing.Literal]
        if args:
            allowed = tuple(v for a in args for v in typing.get_args(a))
            out[name] = (*allowed, None) if type(None) in typing.get_args(tp) else allowed
    return out


def check_choices(cfg: Any) -> None:
    """Raise :class:`ConfigError` when a ``Literal``-typed field holds another value."""
    for name, allowed in _choices(type(cfg)).items():
        value = getattr(cfg, name)
        if value not in allowed:
            shown = [a for a in allowed if a is not None]
            raise ConfigError(f"{name}: {value!r} is not one of {shown}")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
        return str(value)
    if tp is Path:
        return Path(value)
    return value


def _build(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; "
                          f"valid keys: {sorted(fields)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if not where:
            raise
        raise ConfigError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:  # e.g. a required field without a value
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping (an empty file is ``{}``).

    Raises:
        DataNotFoundError: No such file.
        ConfigError: Invalid YAML, or not a mapping at the top level.
    """
    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"{p}: no such config file")
    try:
        loaded = yaml.safe_load(p.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return dict(loaded)


def _nest(key: str, value: Any) -> dict[str, Any]:
    node: dict[str, Any] = {}
    cur = node
    parts = key.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
    return node


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    sets: Mapping[str, Any] | None = None,
) -> T:
    """Build a config dataclass: defaults, then the YAML file, then ``sets``, then
    ``overrides``.

    Args:
        cls: The config dataclass.
        path: Optional YAML file (a mapping; nested mappings for nested dataclasses).
        overrides: Values that win over everything, e.g. CLI flags. Keys may be dotted
            (``"optim.lr"``); ``None`` values are ignored (a flag that was not given).
        sets: ``--set``-style values between the file and ``overrides``; dotted keys as
            there, but ``None`` is a value (YAML ``null``).

    Raises:
        ConfigError: Unknown keys, wrong types, invalid values or an unreadable file.
        DataNotFoundError: ``path`` does not exist.
    """
    values: dict[str, Any] = read_yaml(path) if path is not None else {}
    for key, value in (sets or {}).items():
        values = _merge(values, _nest(key, value))
    for key, value in (overrides or {}).items():
        if value is not None:
            values = _merge(values, _nest(key, value))
    return _build(cls, values, "")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (paths as strings)."""
    return _plain(cfg)


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def hash_values(cfg: Any, scope: str | None = None) -> dict[str, Any]:
    """The JSON-ready values of the fields that decide a stage's output.

    A field counts when its ``hash`` metadata (:func:`option`) is ``True``, or a tuple of
    scopes that holds ``scope``, unless it is marked ``hash_if_changed`` and holds its
    default; nested configs recurse with the same scope.

    Args:
        cfg: A config dataclass.
        scope: The hash's scope (e.g. the retriever of an experiment condition); ``None``
            counts only the fields marked ``True``.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        rule = f.metadata.get("hash", True)
        if rule is False or (rule is not True and scope not in rule):
            continue
        value = getattr(cfg, f.name)
        if f.metadata.get("hash_if_changed") and value == _default(f):
            continue
        nested = dataclasses.is_dataclass(value) and not isinstance(value, type)
        out[f.name] = hash_values(value, scope) if nested else _plain(value)
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def config_hash(cfg: Any, *, scope: str | None = None,
                extra: Mapping[str, Any] | None = None) -> str:
    """A stable short hash of the fields that decide a stage's output (:func:`hash_values`).

    Args:
        cfg: A config dataclass.
        scope: Passed to :func:`hash_values`.
        extra: Values hashed with the fields (and winning over fields of the same name), e.g.
            what a loaded model resolved a field to.
    """
    return stable_hash({**hash_values(cfg, scope), **(extra or {})})


def write_resolved(cfg: Any, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config as YAML into ``out_dir``; returns the file."""
    path = Path(out_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), "utf-8")
    return path
