"""Checks of the users file's parsed YAML, shared by its sections: each refusal names the file and the key.

The users file is read with ``yaml.safe_load`` (plain values, no line numbers), so a mistake is
reported by its key path, as :class:`~bridge.errors.ConfigError` does everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import ConfigError


def mapping(value: object, source: str, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError("must be a mapping", file=source, key=key)
    return value


def no_unknown(data: Mapping[str, Any], allowed: frozenset[str], source: str, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError("unknown key", file=source, key=f"{prefix}{key}")


def opt_str(data: Mapping[str, Any], key: str, source: str, prefix: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError("must be a non-empty string", file=source, key=f"{prefix}{key}")
    return value


def req_str(data: Mapping[str, Any], key: str, source: str, prefix: str) -> str:
    value = opt_str(data, key, source, prefix)
    if value is None:
        raise ConfigError("is required", file=source, key=f"{prefix}{key}")
    return value


def flag(data: Mapping[str, Any], name: str, default: bool, source: str, prefix: str) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError("must be true or false", file=source, key=f"{prefix}{name}")
    return value
