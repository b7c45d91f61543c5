"""Typed configs of the head tier: dataclasses loaded from TOML and overridden with ``key=value``.

The machinery lives in :mod:`cache.config` (shared with the other tiers) and is re-exported
here. ``load_config(Cls, path, overrides)`` builds a (possibly nested) dataclass from a TOML
file, rejecting unknown keys with the file and key named, then applies overrides such as
``search.k=8`` or ``data.clean.root=/data/BSD10k`` (values parsed as TOML literals, falling
back to plain strings). ``to_dict`` / ``dump_toml`` give the resolved config saved next to
every result.
"""
from __future__ import annotations

from cache.config import ConfigError, apply_overrides, dump_toml, from_dict, load_config, to_dict

__all__ = ["ConfigError", "apply_overrides", "dump_toml", "from_dict", "load_config", "to_dict"]
