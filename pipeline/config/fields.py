"""What every config section shares: strict frozen models, and keys that carry their own fix."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def setting(default: Any, *, hint: str, **constraints: Any) -> Any:
    """A config key: its default (``...``: required), its constraints, and the fix an error about
    it names (``messages.py`` appends ``hint``)."""
    return Field(default, json_schema_extra={"hint": hint}, **constraints)


class Section(BaseModel):
    # strict: "7" is not a k, "yes" is not a bool; YAML already gives real types.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def one_or_many(value: Any) -> Any:
    """A YAML string or list as a tuple (one entry, or many)."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value



def unique_names(names: tuple[str, ...]) -> tuple[str, ...]:
    if any(not name.strip() for name in names):
        raise ValueError("a name is empty")
    lowered = [name.lower() for name in names]
    if len(set(lowered)) != len(lowered):
        raise ValueError("a name is listed twice (names are compared ignoring case)")
    return names
