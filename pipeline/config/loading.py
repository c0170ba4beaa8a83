"""YAML (and ``--set KEY=VALUE``) → a validated ``Config``, paths resolved.

Paths written in a YAML file are relative to that file; paths given with ``--set`` are relative to
the current directory, as a user typing them expects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from pipeline.config.messages import describe
from pipeline.config.schema import Config, PredictSettings
from pipeline.errors import ConfigError
from pipeline.io.remote import is_remote

_PATH_KEYS = (("input", "paths"), ("output", "path"))


_S = TypeVar("_S", bound=BaseModel)


def _absolute(value: Any, base: Path) -> Any:
    """Relative path strings (alone or in a list) made absolute against ``base``; URLs and
    others untouched."""
    if isinstance(value, str):
        return value if _is_url(value) else os.path.normpath(base / value)
    if isinstance(value, list):
        return [_absolute(v, base) if isinstance(v, str) else v for v in value]
    return value


def _resolve_exclusions(raw: dict[str, Any], base: Path) -> None:
    """input.exclude's entries that name a file relative to the YAML, as input.paths' do; the
    others (STAC item ids, URLs) as written."""
    section = raw.get("input")
    entries = section.get("exclude") if isinstance(section, dict) else None
    if isinstance(entries, (str, list)):
        listed = [entries] if isinstance(entries, str) else entries
        section["exclude"] = [
            _absolute(e, base) if isinstance(e, str) and not _is_url(e) and (base / e).is_file() else e for e in listed
        ]


def _is_url(value: str) -> bool:
    return "://" in value or is_remote(value)


def _apply_override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: write KEY=VALUE, e.g. --set model.k=5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    *sections, leaf = key.strip().split(".")
    if tuple(key.strip().split(".")) in _PATH_KEYS:
        value = _absolute(value, Path.cwd())
    node = raw
    for part in sections:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section; see --show-config")
    node[leaf] = value


def parse_config(raw: Any, *, source: str = "config", schema: type[_S] = Config) -> _S:
    """Validate an already-loaded mapping (paths must be resolved by the caller)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections input, features, sample, model, output, dask")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {describe(errors[0], schema)}{more}") from None


def predict_settings(overrides: list[str] | tuple[str, ...]) -> PredictSettings:
    """The ``dask`` and ``postprocess`` sections from ``--set KEY=VALUE`` overrides alone (predict has no YAML)."""
    raw: dict[str, Any] = {}
    for assignment in overrides:
        _apply_override(raw, assignment)
    return parse_config(raw, source="--set", schema=PredictSettings)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML run file, apply ``KEY=VALUE`` overrides, validate, and return the Config."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.__class__.__name__}); give a YAML file") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with sections input, features, sample, model, output, dask")
    base = path.resolve().parent
    for section, leaf in _PATH_KEYS:
        if isinstance(raw.get(section), dict) and leaf in raw[section]:
            raw[section][leaf] = _absolute(raw[section][leaf], base)
    _resolve_exclusions(raw, base)
    stac = raw.get("input", {}).get("stac") if isinstance(raw.get("input"), dict) else None
    if isinstance(stac, dict) and isinstance(stac.get("source"), str):
        stac["source"] = _absolute(stac["source"], base)
    for assignment in overrides:
        _apply_override(raw, assignment)
    return parse_config(raw, source=str(path))
