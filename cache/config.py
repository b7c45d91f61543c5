"""Typed configs shared by every tool: dataclasses read from TOML and overridden with ``key=value``.

``load_config(Cls, path, overrides)`` builds a (possibly nested) dataclass from a TOML file
and ``a.b=value`` overrides (values parsed as TOML literals, falling back to plain strings).
Values are converted to the field types (:func:`convert`); unknown keys and ill-typed values
raise :class:`ConfigError` naming the file and the dotted key. :func:`to_dict` and
:func:`dump_toml` write the resolved config that is saved next to every result; reading that
TOML back gives an equal dataclass (TOML has no null: ``None`` values are left out, so they
come back as the field's default).

The tools' own configs (``heads``, ``finetune``, ``extract``, ``extract.llm``) build on these.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, value or override is invalid; the message names the file or option and the key."""


# ---------------------------------------------------------------------------------------- reading
def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML file; a missing file or bad syntax raises ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def parse_value(text: str) -> Any:
    """An override value: a TOML literal (``3``, ``1e-5``, ``true``, ``["a", "b"]``, ``{k = 1}``), else the
    text."""
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return parsed["v"] if set(parsed) == {"v"} else text  # "1\nw = 2" is a string, not two keys


def split_override(item: str, option: str = "override") -> tuple[str, str]:
    """``"a.b = 3"`` → ``("a.b", "3")``; ConfigError (naming ``option``) without ``=`` or key."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} expects KEY=VALUE, got {item!r}")
    return key.strip(), text.strip()


# ---------------------------------------------------------------------------------------- types
def field_types(cls) -> dict[str, Any]:
    """``{field name: resolved type}`` of dataclass ``cls`` (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def strip_optional(tp) -> tuple[Any, bool]:
    """``X | None`` → ``(X, True)``; any other type → ``(type, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = tuple(a for a in args if a is not type(None))
        if len(rest) < len(args):
            # typing.Union built at run time from a tuple, not an annotation
            return (rest[0] if len(rest) == 1 else typing.Union[rest]), True  # noqa: UP007
    return tp, False


def _name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _fail(where: str, key: str, message: str):
    raise ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def convert(tp, value, key: str = "", where: str = "config"):
    """``value`` as type ``tp``; ConfigError ``"<where>: <key>: expected ..."`` when it does not fit.

    Handles ``X | None`` (None only there), other unions (first arm that fits), ``list``/``tuple``
    (a single string counts as a one-item list, ``""`` as an empty one), ``dict`` (values converted),
    nested dataclasses (:func:`from_dict`), ``bool``, ``int`` (integral floats too), ``float``
    (ints too), ``str`` (numbers and paths too), ``Path`` and ``Any``.
    """
    tp, optional = strip_optional(tp)
    if tp in (Any, object):
        return value
    if value is None:
        if optional:
            return None
        _fail(where, key, f"expected {_name(tp)}, got None")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return convert(arm, value, key, where)
            except ConfigError:
                pass
        _fail(where, key, f"expected {' or '.join(_name(a) for a in args)}, got {value!r}")
    if tp in (list, tuple) or origin in (list, tuple):
        if isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, (list, tuple)):
            _fail(where, key, f"expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                _fail(where, key, f"expected {len(args)} items, got {value!r}")
            items = [
                convert(a, v, f"{key}[{i}]", where) for i, (a, v) in enumerate(zip(args, value, strict=True))
            ]
        else:
            inner = args[0] if args else Any
            items = [convert(inner, v, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if tuple in (tp, origin) else items
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            _fail(where, key, f"expected a table like {{key = value}}, got {value!r}")
        inner = args[1] if len(args) == 2 else Any
        return {k: convert(inner, v, f"{key}.{k}" if key else str(k), where) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        _fail(where, key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        _fail(where, key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        _fail(where, key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, PurePath)) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
        ):
            return str(value)
        _fail(where, key, f"expected a string, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, (str, PurePath)):
            return tp(value)
        _fail(where, key, f"expected a path (string), got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    _fail(where, key, f"expected {_name(tp)}, got {value!r}")


def from_dict(cls: type[T], data: Mapping, where: str = "config", prefix: str = "") -> T:
    """Dataclass ``cls`` from a (nested) dict; missing keys keep their defaults.

    Unknown keys raise ConfigError naming them (dotted below ``prefix``) and listing the known
    ones; values go through :func:`convert`. ``where`` names the source (a file, "override").
    """
    if not isinstance(data, Mapping):
        _fail(where, prefix, f"expected a table, got {data!r}")
    types_ = field_types(cls)
    unknown = [k for k in data if k not in types_]
    if unknown:
        names = ", ".join(repr(f"{prefix}.{k}" if prefix else str(k)) for k in unknown)
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {names}; "
            f"known keys{' in ' + prefix if prefix else ''}: {', '.join(types_)}"
        )
    kwargs = {k: convert(types_[k], v, f"{prefix}.{k}" if prefix else k, where) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a value
        _fail(where, prefix, str(e))


def to_dict(obj) -> dict:
    """A JSON/TOML-ready dict of a dataclass, recursively (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


# ---------------------------------------------------------------------------------------- overrides
def apply_overrides(data: dict, overrides: Iterable[str] | None, option: str = "override") -> dict:
    """A copy of nested dict ``data`` with ``a.b=value`` overrides set (``models.0.k=3`` indexes a list)."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        key, text = split_override(item, option)
        parts = key.split(".")
        node: Any = data
        try:
            for p in parts[:-1]:
                node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
            last = parts[-1]
            if isinstance(node, list):
                node[int(last)] = parse_value(text)
            else:
                node[last] = parse_value(text)
        except (ValueError, IndexError, AttributeError, TypeError):
            raise ConfigError(f"{option} {item!r}: {key} does not name a value of the config") from None
    return data


def _all_defaults(cls) -> bool:
    return all(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in dataclasses.fields(cls)
    )


def _deep_merge(a: dict, b: Mapping) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] | None = None) -> T:
    """Dataclass ``cls``: its defaults < the TOML file ``path`` (optional) < ``key=value`` overrides."""
    overrides = list(overrides or [])
    data = read_toml(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    if overrides:
        where += " (with overrides)"
    base = to_dict(cls()) if _all_defaults(cls) else {}
    return from_dict(cls, apply_overrides(_deep_merge(base, data), overrides), where)


# ---------------------------------------------------------------------------------------- writing
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k) -> str:
    k = str(k)
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _toml_value(v, key: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # nan, inf and -inf are TOML too
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, f"{key}[{i}]") for i, x in enumerate(v)) + "]"
    if isinstance(v, Mapping):
        return (
            "{"
            + ", ".join(
                f"{_toml_key(k)} = {_toml_value(x, f'{key}.{k}')}" for k, x in v.items() if x is not None
            )
            + "}"
        )
    if v is None:
        raise ConfigError(f"{key}: TOML cannot hold None inside a list")
    return json.dumps(str(v)).replace("\x7f", "\\u007f")


def _is_table_array(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def dump_toml(data: Mapping) -> str:
    """TOML text of a resolved config dict (tables, arrays of tables, scalars, lists; None left out)."""
    lines: list[str] = []

    def emit(path: list[str], d: Mapping) -> None:
        for k, v in d.items():
            if v is not None and not isinstance(v, Mapping) and not _is_table_array(v):
                lines.append(f"{_toml_key(k)} = {_toml_value(v, '.'.join(path + [str(k)]))}")
        for k, v in d.items():
            sub = path + [str(k)]
            header = ".".join(_toml_key(p) for p in sub)
            if isinstance(v, Mapping):
                lines.extend(["", f"[{header}]"])
                emit(sub, v)
            elif _is_table_array(v):
                for item in v:
                    lines.extend(["", f"[[{header}]]"])
                    emit(sub, item)

    emit([], data)
    return "\n".join(lines).strip() + "\n"
