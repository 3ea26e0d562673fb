"""The click plumbing every config-backed command shares: ``--config``, ``--set`` and flags.

A command built with :func:`config_command` takes ``--config FILE`` (a YAML file of its
config class's keys), ``--set KEY=VALUE`` (repeatable; dotted keys reach nested sections;
VALUE is YAML, empty for null) and one flag per :class:`Flag`. Precedence: the dataclass
defaults, then the file, then ``--set``, then the flags. A flag's help is the field's help
metadata and shows the dataclass default, so no command restates either. The callback
receives the resolved sources as ``config`` (:class:`ConfigArgs`); the config class is
imported on first use of the command, so ``augret --help`` imports no stage.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from augret.errors import ConfigError

__all__ = ["RAY_FLAGS", "ConfigArgs", "ConfigCommand", "Flag", "config_command", "flag",
           "load_engine_config", "parse_sets"]

_FILE, _SETS, _POSITIONAL = "config_file", "config_sets", "config_path"
_UNSET: Any = object()


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag that sets one config key.

    Attributes:
        decls: The flag's names, e.g. ``("--out", "--output-dir")``.
        key: The dotted config key it sets.
        value: For an on/off flag: the value it sets when given (``--no-queries``: False).
        convert: Maps the parsed value to the config value (e.g. MB to bytes).
        note: Appended to the field's help (what the flag adds to the field).
        help: Replaces the field's help (only where the flag's unit differs from the field's).
        show: Formats the field default for the help (default: as is).
        multiple: The flag repeats; its values form a list.
        envvar: An environment variable read when the flag is absent.
    """

    decls: tuple[str, ...]
    key: str
    value: Any = _UNSET
    convert: Callable[[Any], Any] | None = None
    note: str | None = None
    help: str | None = None
    show: Callable[[Any], str] | None = None
    multiple: bool = False
    envvar: str | None = None

    @property
    def name(self) -> str:
        """The click parameter name (unique per key)."""
        return "cfg__" + self.key.replace(".", "__")


def flag(*decls: str, key: str | None = None, **kw: Any) -> Flag:
    """A :class:`Flag`; ``key`` defaults to the first name (``--batch-size``: batch_size)."""
    return Flag(decls, key or decls[0].lstrip("-").replace("-", "_"), **kw)


#: The Ray flags of the ``ray`` engines (``--workers``: see :func:`load_engine_config`).
RAY_FLAGS = (
    flag("--address", key="ray.address"),
    flag("--workers", note="With --engine ray: Ray actors, each holding one model "
                           "(ray.workers)."),
    flag("--gpus-per-worker", key="ray.gpus_per_worker"),
    flag("--cpus-per-worker", key="ray.cpus_per_worker"),
)


def _resolve(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _field(cls: type, key: str) -> tuple[dataclasses.Field, Any]:
    """The field a dotted key names, and its type."""
    *parents, last = key.split(".")
    for part in parents:
        tp = typing.get_type_hints(cls)[part]
        cls = next((a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)), tp)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return fields[last], typing.get_type_hints(cls)[last]


def _click_type(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(tp)])
    if args and typing.get_origin(tp) is not list and len(args) == 1:
        return _click_type(args[0])
    return {int: click.INT, float: click.FLOAT, Path: click.Path(path_type=Path)}.get(
        tp, click.STRING)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _shown(value: Any) -> str | None:
    if value is None or isinstance(value, bool) or dataclasses.is_dataclass(value):
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or None
    return str(value)


def _option(cls: type, fl: Flag) -> click.Option:
    f, tp = _field(cls, fl.key)
    text = fl.help or f.metadata.get("help", "")
    if fl.note:
        text = f"{text} {fl.note}"
    kw: dict[str, Any] = {"default": None, "envvar": fl.envvar}
    if fl.value is not _UNSET or tp is bool:
        kw.update(is_flag=True, flag_value=True if fl.value is _UNSET else fl.value)
    else:
        default = _default(f)
        shown = fl.show(default) if fl.show and default is not None else _shown(default)
        if shown:
            text = f"{text}  [default: {shown}]"
        kw.update(type=_click_type(tp) if fl.convert is None else click.STRING,
                  multiple=fl.multiple)
        if fl.convert is not None and tp in (int, float):
            kw["type"] = click.FLOAT
    return click.Option([*fl.decls, fl.name], help=text, **kw)


@dataclasses.dataclass(frozen=True)
class ConfigArgs:
    """What a command line gave for one config: the file, ``--set`` values and flags.

    Attributes:
        cls: The config class.
        path: The ``--config`` file (or the positional config file).
        sets: ``--set`` values by dotted key (``None``: null).
        flags: The values of the flags given, by dotted key.
    """

    cls: type
    path: Path | None
    sets: Mapping[str, Any]
    flags: Mapping[str, Any]

    def load(self, *, base: Mapping[str, Any] | None = None,
             skip: Sequence[str] = ()) -> Any:
        """The resolved config.

        Args:
            base: Values (dotted keys) between the file and ``--set``.
            skip: Flag keys to leave out.

        Raises:
            ConfigError: Unknown keys, bad values.
        """
        from augret.config import load_config

        flags = {k: v for k, v in self.flags.items() if k not in skip}
        return load_config(self.cls, self.path, flags, sets={**(base or {}), **self.sets})


def load_engine_config(args: ConfigArgs) -> Any:
    """Load a config with ``engine`` and ``ray``: ``--workers`` sets ``ray.workers`` when the
    resolved engine is ``ray``, else ``workers``."""
    cfg = args.load()
    if cfg.engine == "ray" and "workers" in args.flags:
        flags = {("ray.workers" if k == "workers" else k): v for k, v in args.flags.items()}
        cfg = dataclasses.replace(args, flags=flags).load()
    return cfg


def parse_sets(values: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` strings as ``{dotted key: value}`` (VALUE is YAML; empty: None).

    Raises:
        ConfigError: An item without ``=`` or with invalid YAML.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (dotted keys for nested "
                              "sections, e.g. optim.lr=1e-4)")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: invalid YAML value: {exc}") from None
    return out


class ConfigCommand(click.Command):
    """A command with ``--config``, ``--set`` and config flags (see the module docstring).

    Args:
        config: The config class as ``"module:Class"``.
        flags: Its flags.
        positional: Also take the config file as an optional first argument (commands whose
            file has always been positional, e.g. ``augret train CONFIG.yaml``).
    """

    def __init__(self, *args: Any, config: str, flags: Sequence[Flag] = (),
                 positional: bool = False, **kwargs: Any) -> None:
        self._built = False
        self.config_ref, self.flags, self.positional = config, tuple(flags), positional
        super().__init__(*args, **kwargs)

    @property
    def config_class(self) -> type:
        """The config class (imported on first use)."""
        return _resolve(self.config_ref)

    @property
    def params(self) -> list[click.Parameter]:  # type: ignore[override]
        if not self._built:
            self._built = True
            self._params += self._config_params()
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value

    def _config_params(self) -> list[click.Parameter]:
        cls = self.config_class
        name = cls.__name__
        out: list[click.Parameter] = []
        if self.positional:
            out.append(click.Argument([_POSITIONAL], required=False, metavar="[CONFIG.yaml]",
                                      type=click.Path(path_type=Path)))
        out.append(click.Option(
            ["--config", _FILE], type=click.Path(path_type=Path), default=None,
            help=f"YAML file of {name} keys overlaid on the defaults (--set and flags win)."))
        out.append(click.Option(
            ["--set", _SETS], multiple=True, metavar="KEY=VALUE",
            help=f"Set any {name} key (dotted for nested sections; VALUE is YAML, empty for "
                 "null); repeatable; wins over --config, flags win over it."))
        out += [_option(cls, fl) for fl in self.flags]
        return out

    def invoke(self, ctx: click.Context) -> Any:
        p = ctx.params
        path = p.pop(_FILE, None)
        given = p.pop(_POSITIONAL, None) if self.positional else None
        if given is not None and path is not None:
            raise ConfigError(f"give the config file once: {given} or --config {path}")
        flags: dict[str, Any] = {}
        for fl in self.flags:
            value = p.pop(fl.name, None)
            if value is None or (fl.multiple and not value):
                continue
            flags[fl.key] = fl.convert(value) if fl.convert else value
        p["config"] = ConfigArgs(self.config_class, given or path,
                                 parse_sets(p.pop(_SETS, ())), flags)
        return super().invoke(ctx)


def config_command(name: str | None = None, *, config: str, flags: Sequence[Flag] = (),
                   positional: bool = False, group: click.Group | None = None,
                   **kwargs: Any) -> Callable[[Callable[..., Any]], ConfigCommand]:
    """A :class:`ConfigCommand` decorator (``group``: register it there, as
    ``group.command`` does)."""
    make = group.command if group is not None else click.command
    return make(name, cls=ConfigCommand, config=config, flags=flags, positional=positional,
                **kwargs)
