"""Typed settings, each option declared once and filled from the command line or a TOML table.

A settings class is a frozen dataclass whose fields are declared with `option()`: the flags, the
parser of a text value (an `options` type), the help. From that one declaration come the argparse
arguments of a command (`add_options`), the settings from its parsed namespace (`from_namespace`),
and the settings from a TOML table (`from_table`), whose keys are the fields' names (the long option
with `-` as `_`). Checks that involve several fields go in the class's `__post_init__`, raising
UsageError: the same rule then holds on the command line and in a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wattprobe.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Option:
    """How one settings field is given: its flags, how its text is parsed, what it means."""

    flags: tuple[str, ...]
    parse: Callable[[str], Any] | None  # None: a flag (bool) or a plain string
    help: str
    choices: tuple[str, ...] | None
    metavar: str | None
    flag: bool
    secret: bool  # its value must never leave the machine (a token): see `secrets()`


def option(
    default: Any,
    *flags: str,
    parse: Callable[[str], Any] | None = None,
    help: str = "",
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    secret: bool = False,
) -> Any:
    """A settings field given by `flags` (default: --NAME); a bool default makes it an on/off flag.

    `secret`: the value is a secret (a token) that must never be exported, not even in the agent's
    own command line (see `secrets()`).
    """
    spec = Option(flags, parse, help, choices, metavar, flag=isinstance(default, bool), secret=secret)
    return field(default=default, metadata={"option": spec})


def _options(cls: type) -> list[tuple[dataclasses.Field, Option]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type) -> None:
    """The argparse arguments of every option of `cls`."""
    for f, spec in _options(cls):
        flags = spec.flags or (f"--{f.name.replace('_', '-')}",)
        if spec.flag:
            parser.add_argument(*flags, dest=f.name, action="store_true", help=spec.help)
            continue
        parser.add_argument(
            *flags,
            dest=f.name,
            type=spec.parse or str,
            default=f.default,
            choices=spec.choices,
            metavar=spec.metavar,
            help=spec.help,
        )


def from_namespace(cls: type[T], namespace: argparse.Namespace) -> T:
    """The settings of `cls` from parsed arguments."""
    return cls(**{f.name: getattr(namespace, f.name) for f, _ in _options(cls)})


def from_table(cls: type[T], table: Mapping[str, Any], where: str, *, base: T | None = None) -> T:
    """The settings of `cls` from a TOML table, over `base` (else the defaults); `where` (e.g.
    "agent.toml [outputs.json]") starts every error, which names the key and what was expected."""
    known = {f.name: spec for f, spec in _options(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UsageError(f"{where}: unknown key {shown(key)} (known: {names})")
        values[key] = _value(known[key], value, f"{where}: {key}")
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]
    except UsageError as error:
        raise UsageError(f"{where}: {error}") from None


def secrets(settings: Any) -> set[str]:
    """The values of the secret options of a settings object that were given."""
    return {
        str(getattr(settings, f.name))
        for f, spec in _options(type(settings))
        if spec.secret and getattr(settings, f.name)
    }


def shown(value: Any, limit: int = 60) -> str:
    """A value as an error shows it: its repr (control characters escaped: one line), cut to `limit`."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def shown_key(key: str) -> str:
    """A TOML key as written in a file: bare when it can be, else quoted and escaped (one line)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(spec: Option, value: Any, where: str) -> Any:
    """A TOML value checked and parsed as the command line would parse its text."""
    if spec.flag:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {shown(value)}")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UsageError(f"{where}: expected a {'number' if spec.parse else 'string'}, got {shown(value)}")
    if isinstance(value, str) and "\0" in value:  # no command line can hold one, nor can a path
        raise UsageError(f"{where}: a NUL character cannot be in a value")
    if spec.choices is not None and str(value) not in spec.choices:
        raise UsageError(f"{where}: expected one of {', '.join(spec.choices)}, got {shown(value)}")
    if spec.parse is None:
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {shown(value)}")
        return value
    try:
        return spec.parse(str(value))
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"{where}: {error}") from None
