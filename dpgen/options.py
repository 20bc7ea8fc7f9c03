"""Options declared once: a config dataclass generates its command-line flags and reads YAML/JSON.

Every command of dpgen, dptrain and dpeval describes its settings as one keyword-only dataclass
that inherits `Options`; each field is declared with `option` (default, help text, choices).
From that one declaration come

- the flags: ``field_name`` -> ``--field-name``, typed from the annotation (`add_arguments`);
- the config file: ``--config FILE`` (YAML or JSON, a mapping of field names; unknown keys and
  values of the wrong type are an `OptionError` naming the file and the key) (`read_file`);
- the precedence, lowest first: field defaults, a named preset, the file, the flags
  (`from_namespace`);
- a JSON-able record of the run's settings (`to_dict`), for provenance and model cards.

Annotations understood: ``bool`` (``--flag/--no-flag``), ``int``, ``float``, ``str``, ``Path``,
``X | None``, ``tuple[X, ...]`` / ``list[X]`` (comma-separated or repeated on the command line,
a list in a file), fixed ``tuple[X, Y]`` (``nargs=2``) and ``dict[str, str]`` (``--flag NAME=VALUE``,
repeatable; a mapping in a file). A field may name its own string parser (``parse=``) for
spellings such as ``4x4``.

Example::

    @dataclass(kw_only=True)
    class ProbeConfig(Options):
        model: str = option(help="DiffusionPrint folder or Hub id")
        batch_size: int = option(512, help="patches per forward pass")

    parser = argparse.ArgumentParser()
    ProbeConfig.add_arguments(parser)
    config = ProbeConfig.from_namespace(parser.parse_args(argv), parser)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dpgen.errors import InputError

T = TypeVar("T", bound="Options")

#: Arguments every generated parser has besides the fields (not fields themselves).
CONFIG_FLAG = "config"
PRESET_FLAG = "preset"


class OptionError(InputError):
    """A setting is unknown, missing, or has a value of the wrong type or outside its choices."""


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: tuple | list | None = None,
    positional: bool = False,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """Declare a config field and its flag.

    Args:
        default: the default value; a list, dict or set is copied per instance. Without one
            the option is required (on the command line or in the config file).
        help: the flag's help text (also the field's documentation).
        choices: allowed values, checked for flags, files and direct construction alike.
        positional: a positional argument instead of ``--flag`` (a list field takes ``*``).
        metavar: the flag's placeholder in ``--help``.
        parse: converts a command-line string (and a string in a file) to the field's value;
            replaces the annotation's parser.
    """
    metadata = {"help": help, "choices": choices, "positional": positional}
    metadata.update(metavar=metavar, parse=parse)
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# --------------------------------------------------------------------------- types


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _scalar(tp: Any) -> Callable[[Any], Any]:
    """Converter of one scalar value (a string from the command line, or a file value)."""
    if tp is bool:

        def to_bool(value: Any) -> bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")

        return to_bool
    if tp is int:

        def to_int(value: Any) -> int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)

        return to_int
    if tp is float:

        def to_float(value: Any) -> float:
            if isinstance(value, bool):
                raise ValueError(f"not a number: {value!r}")
            return float(value)

        return to_float
    if tp is str:

        def to_str(value: Any) -> str:
            if isinstance(value, dict | list | tuple):
                raise ValueError(f"not a string: {value!r}")
            return str(value)

        return to_str
    if tp is Path:
        return lambda value: Path(str(value))
    raise TypeError(f"unsupported option type {tp!r}")


@dataclasses.dataclass(frozen=True)
class _Kind:
    """How one field is parsed: from a command-line string and from a file value."""

    kind: str  # "scalar", "bool", "list", "pair", "dict"
    container: type | None
    items: tuple[Callable[[Any], Any], ...]
    optional: bool


def _kind(tp: Any) -> _Kind:
    tp, optional = _strip_optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return _Kind("bool", None, (_scalar(bool),), optional)
    if origin in (list, tuple) and (origin is list or (len(args) == 2 and args[1] is Ellipsis)):
        return _Kind("list", origin, (_scalar(args[0]),), optional)
    if origin is tuple:
        return _Kind("pair", tuple, tuple(_scalar(a) for a in args), optional)
    if origin is dict:
        return _Kind("dict", dict, (_scalar(args[0]), _scalar(args[1])), optional)
    return _Kind("scalar", None, (_scalar(tp),), optional)


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _coerce(f: dataclasses.Field, kind: _Kind, value: Any) -> Any:
    """A file (or command-line) value converted to the field's type; ValueError if it cannot be."""
    parse = f.metadata.get("parse")
    if value is None:
        if kind.optional or f.default is None:
            return None
        raise ValueError("null is not allowed here")
    if parse is not None and isinstance(value, str):
        return parse(value)
    if kind.kind in ("scalar", "bool"):
        return kind.items[0](value)
    if kind.kind == "list":
        items = _split_list(value) if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        return kind.container(kind.items[0](v) for v in items)
    if kind.kind == "pair":
        if not isinstance(value, list | tuple) or len(value) != len(kind.items):
            raise ValueError(f"expected a list of {len(kind.items)} values, got {value!r}")
        return tuple(conv(v) for conv, v in zip(kind.items, value, strict=True))
    # dict: a mapping, or NAME=VALUE strings (from repeated flags)
    if isinstance(value, list | tuple):
        pairs = {}
        for item in value:
            name, sep, rest = str(item).partition("=")
            if not (sep and name and rest):
                raise ValueError(
                    f"expected {f.metadata.get('metavar') or 'NAME=VALUE'}, got {item!r}"
                )
            if name in pairs:
                raise ValueError(f"{name!r} given twice")
            pairs[name] = rest
        value = pairs
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping, got {value!r}")
    key, val = kind.items
    return {key(k): val(v) for k, v in value.items()}


# --------------------------------------------------------------------------- the mixin


class Options:
    """Mixin for ``@dataclass(kw_only=True)`` configs whose fields are declared with `option`.

    Subclasses validate their values in ``__post_init__`` (calling ``super().__post_init__()``
    first), raising `OptionError` (or `dpgen.errors.InputError`) with a message that names the
    setting.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices is None or value is None:
                continue
            values = value if isinstance(value, list | tuple) else [value]
            bad = [v for v in values if v not in choices]
            if bad:
                raise OptionError(f"{f.name}: {bad[0]!r} is not one of {list(choices)}")

    # -- introspection ----------------------------------------------------------------------

    @classmethod
    def fields(cls) -> dict[str, dataclasses.Field]:
        """The config's fields by name, in declaration order."""
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def _kinds(cls) -> dict[str, _Kind]:
        hints = typing.get_type_hints(cls)
        return {name: _kind(hints[name]) for name in cls.fields()}

    @classmethod
    def required(cls) -> list[str]:
        """Names of the fields without a default."""
        return [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]

    @staticmethod
    def flag(name: str) -> str:
        """The command-line spelling of a field: ``batch_size`` -> ``--batch-size``."""
        return "--" + name.replace("_", "-")

    # -- command line -----------------------------------------------------------------------

    @classmethod
    def add_arguments(
        cls, parser: argparse.ArgumentParser, presets: Mapping[str, Mapping] | None = None
    ) -> argparse.ArgumentParser:
        """Add ``--config``, ``--preset`` (when ``presets`` are given) and one flag per field.

        Every flag defaults to None, so `from_namespace` can tell a given flag from an absent one.
        """
        if presets:
            parser.add_argument(
                "--" + PRESET_FLAG, choices=sorted(presets), help="named base settings"
            )
        parser.add_argument(
            "--" + CONFIG_FLAG,
            type=Path,
            metavar="FILE",
            help="YAML or JSON file of settings (keys: the flags' names with underscores)",
        )
        kinds = cls._kinds()
        for f in dataclasses.fields(cls):
            cls._add_field(parser, f, kinds[f.name])
        return parser

    @classmethod
    def _add_field(cls, parser: argparse.ArgumentParser, f: dataclasses.Field, kind: _Kind):
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = meta["help"]
        if default not in (None, "", (), []) and kind.kind != "bool":
            help_text += f" (default: {_show(default)})"
        kwargs: dict[str, Any] = {"help": help_text, "default": None}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if meta.get("choices") is not None and kind.kind == "scalar":
            kwargs["choices"] = meta["choices"]
        convert = meta.get("parse") or kind.items[0]
        if kind.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind.kind == "list" and not meta.get("positional"):
            kwargs["action"] = "append"  # repeated or comma-separated: split in from_namespace
        elif kind.kind == "list":
            kwargs["type"] = str
        elif kind.kind == "pair" and meta.get("parse") is None:
            kwargs["nargs"] = len(kind.items)
        elif kind.kind == "dict":
            kwargs["action"] = "append"
            kwargs.setdefault("metavar", "NAME=VALUE")
        else:
            kwargs["type"] = _cli_type(convert, f.name)
        if meta.get("positional"):
            kwargs.pop("default")
            kwargs["nargs"] = "*" if kind.kind == "list" else "?"
            parser.add_argument(f.name, **kwargs)
        else:
            parser.add_argument(cls.flag(f.name), dest=f.name, **kwargs)

    @classmethod
    def from_namespace(
        cls: type[T],
        args: argparse.Namespace,
        parser: argparse.ArgumentParser | None = None,
        presets: Mapping[str, Mapping] | None = None,
    ) -> T:
        """Build the config from parsed flags: defaults < preset < ``--config`` file < flags.

        Raises:
            OptionError: a bad file, key or value (naming it), or a required setting missing.
                With ``parser`` given, reported through ``parser.error`` (exit status 2).
        """
        try:
            values: dict[str, Any] = {}
            preset = getattr(args, PRESET_FLAG, None)
            if preset is not None and presets:
                values.update(cls.check_values(presets[preset], f"preset {preset!r}"))
            path = getattr(args, CONFIG_FLAG, None)
            if path is not None:
                values.update(cls.read_file(path))
            values.update(cls._given(args))
            return cls.from_values(values)
        except OptionError as err:
            if parser is None:
                raise
            parser.error(str(err))

    @classmethod
    def _given(cls, args: argparse.Namespace) -> dict[str, Any]:
        kinds, out = cls._kinds(), {}
        for name, f in cls.fields().items():
            value = getattr(args, name, None)
            if value is None or value == []:
                continue
            if kinds[name].kind == "list" and not f.metadata.get("positional"):
                value = [item for text in value for item in _split_list(text)]
            try:
                out[name] = _coerce(f, kinds[name], value)
            except ValueError as err:
                raise OptionError(f"{cls.flag(name)}: {err}") from None
        return out

    # -- files and values -------------------------------------------------------------------

    @classmethod
    def check_values(cls, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Coerce a mapping of settings to the fields' types.

        Raises:
            OptionError: ``"<where>: ..."`` for an unknown key or a value of the wrong type.
        """
        if not isinstance(values, Mapping):
            raise OptionError(
                f"{where}: expected a mapping of settings, got {type(values).__name__}"
            )
        fields, kinds = cls.fields(), cls._kinds()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise OptionError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
        out = {}
        for name, value in values.items():
            try:
                out[name] = _coerce(fields[name], kinds[name], value)
            except (ValueError, TypeError) as err:
                raise OptionError(f"{where}: {name}: {err}") from None
        return out

    @classmethod
    def read_file(cls, path: str | Path) -> dict[str, Any]:
        """The settings of a YAML or JSON file (JSON is YAML), checked with `check_values`.

        Raises:
            OptionError: naming the file, if it cannot be read or parsed or has a bad key.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise OptionError(f"{path}: cannot read config file: {reason}") from None
        return cls.check_values(data or {}, str(path))

    @classmethod
    def from_values(cls: type[T], values: Mapping[str, Any], where: str = "settings") -> T:
        """Construct from a mapping of settings, coerced by `check_values`.

        Raises:
            OptionError: a bad key or value, or a missing required setting.
        """
        values = cls.check_values(values, where)
        missing = [n for n in cls.required() if values.get(n) in (None, "", [], ())]
        if missing:
            raise OptionError("required: " + ", ".join(cls.flag(n) for n in missing))
        return cls(**values)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        """A config from a YAML/JSON file alone (no flags)."""
        return cls.from_values(cls.read_file(path), str(path))

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able data (paths as strings, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 80) -> str:
    """The keys whose values differ, ``"patch_size 64 -> 32, seed 0 -> 1"``, for the one-line
    error of a rerun into an output folder made with other settings.

    Nested mappings are compared key by key (``generated.sd``); a key on one side only shows
    ``(none)`` on the other; a value's text longer than ``limit`` characters is cut.
    """

    def text(value: Any) -> str:
        shown = "(none)" if value is _MISSING else json.dumps(_plain(value))
        return shown if len(shown) <= limit else shown[: limit - 1] + "…"

    def walk(a: Any, b: Any, prefix: str) -> list[str]:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            return [
                change
                for key in dict.fromkeys([*a, *b])
                for change in walk(a.get(key, _MISSING), b.get(key, _MISSING), f"{prefix}{key}.")
            ]
        if _plain(a) == _plain(b):
            return []
        return [f"{prefix.rstrip('.')} {text(a)} -> {text(b)}"]

    return ", ".join(walk(old, new, "")) or "(none)"


_MISSING = object()


def _cli_type(convert: Callable[[Any], Any], name: str) -> Callable[[str], Any]:
    """Wrap a converter so argparse reports its ValueError as ``invalid value`` for the flag."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = name
    return parse


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
