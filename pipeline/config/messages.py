"""pydantic's validation errors as one line naming the YAML key and the fix."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

from pydantic import (
    BaseModel,
)

from pipeline.config.schema import Config
from pipeline.io.remote import scrub

_UNECHOED = ("input.remote.gdal",)  # a refused setting may hold a secret: its value is not repeated


def _key(loc: tuple[Any, ...], root: type[BaseModel] = Config) -> tuple[str, type[BaseModel]]:
    """The dotted YAML key of an error location, and the section that holds it.

    Union members and list indices add parts to pydantic's location that are not YAML keys.
    """
    parts: list[str] = []
    model: type[BaseModel] = root
    section: type[BaseModel] = root
    for part in loc:
        if isinstance(part, int) and parts and model is not section:
            parts[-1] += f"[{part}]"  # an entry of a list of sections, e.g. classes[2]
            section = model
            continue
        if not isinstance(part, str):
            break
        if "[" in part and part not in model.model_fields:
            continue  # a union member's tag, e.g. tuple[ClassConfig, ...]
        parts.append(part)
        field = model.model_fields.get(part)
        entry = _list_entry(field.annotation) if field is not None else None
        if entry is not None:
            model = entry  # entered only once an index follows
            continue
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        section = model = field.annotation
    return ".".join(parts), section


def _hint(key: str, root: type[BaseModel]) -> str | None:
    """The fix written beside the field that ``key`` (e.g. ``classes[2].name``) names."""
    model: type[BaseModel] | None = root
    field = None
    for part in re.sub(r"\[\d+\]", "", key).split("."):
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        model = _section(field.annotation)
    return (field.json_schema_extra or {}).get("hint")


def _section(annotation: Any) -> type[BaseModel] | None:
    """The section type of a field: ``Section``, ``Section | None`` or ``tuple[Section, ...] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return _list_entry(annotation)


def _list_entry(annotation: Any) -> type[BaseModel] | None:
    """The section type of a ``tuple[Section, ...] | None`` field, else None."""
    for arg in get_args(annotation):
        inner = get_args(arg) if get_origin(arg) is tuple else (arg,)
        if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            return inner[0]
    return None


def describe(error: dict[str, Any], root: type[BaseModel] = Config) -> str:
    key, section = _key(error["loc"], root)
    if error["type"] == "extra_forbidden":
        parent = key.rpartition(".")[0]
        where = f"under '{parent}'" if parent else "at the top level"
        return f"unknown key '{key}'; valid keys {where} are: {', '.join(section.model_fields)}"
    if error["type"] == "missing":
        return f"'{key}' is required"
    message = error["msg"].removeprefix("Value error, ")
    if not key:  # a cross-field check: its message already names the keys
        return message
    hint = _hint(key, root)
    got = "" if key.startswith(_UNECHOED) else f" (got {scrub(repr(error.get('input')))})"  # no signed URL either
    return f"'{key}': {message}{got}" + (f"; {hint}" if hint else "")
