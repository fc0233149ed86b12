"""Strict TOML settings: read a file, build frozen dataclasses, refuse unknown keys and types.

One home below every settings file of edgevcf (target profiles, calibration recipes,
``serve.toml``): a typo in any of them is a :class:`~edgevcf.errors.ConfigError` that names the
file, table and key, never a silently ignored setting.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args, get_origin

from edgevcf.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against a field type (TOML gives ints where floats are meant: accepted)."""
    if isinstance(tp, str):
        tp = {"int": int, "float": float, "bool": bool, "str": str}.get(tp, tp)
    origin = get_origin(tp)
    if origin is tuple:
        (item,) = get_args(tp)[:1]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(coerce(v, item, where) for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return value


def check_table(cls: type, data: dict[str, Any], source: str, table: str) -> Any:
    """Build a settings dataclass, refusing unknown keys and wrong types."""
    import typing

    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} in [{table}]",
            hint=f"valid keys in [{table}]: {', '.join(known)}",
        )
    values = {k: coerce(v, hints[k], f"{source}: [{table}] {k}") for k, v in data.items()}
    return cls(**values)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid files are a ConfigError naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


__all__ = ["check_table", "coerce", "read_toml"]
