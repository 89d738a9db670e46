"""YAML (de)serialisation of the config tree, strict type checking and command-line overrides.

Everything that turns untyped data (YAML, ``--set key=value``) into the typed tree goes through
``_coerce``, so a wrong key or type fails the same way wherever it comes from: a ``ConfigError``
whose message starts with the dotted key. Text that is not YAML at all fails as a ``ConfigError`` too,
one line with the position (``FILE:LINE:COL: problem`` for a file), so train.py never shows a parser
traceback.

Not pydantic (installed, 2.x): on these plain dataclasses its lax mode accepts what ``_coerce`` refuses
(unknown keys silently dropped, ``true`` as a number, the string ``"nan"`` as a float, ``"3"`` as an
integer) and its strict mode refuses every mapping, so it would need its own dataclass types in schema.py
plus a translation of its multi-line errors into the one ``key: problem`` line, which is no less code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Union

import yaml

from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.config.validation import validate


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _describe(tp: Any) -> str:
    """What a value of annotation ``tp`` looks like, for messages (``true/false or 'auto'``)."""
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(choice) for choice in typing.get_args(tp))
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, _type_name(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked (and, where lossless, converted) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build_dataclass(tp, value, key)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        expected = " or ".join(_describe(arg) for arg in args if arg is not type(None))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {expected}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # a YAML integer with hundreds of digits
            raise ConfigError(f"{key}: an integer of {len(str(value))} digits is too large for a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported annotation {_type_name(tp)}")  # a schema bug, not user error


def _build_dataclass(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{dotted}: unknown key (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def from_dict(data: dict | None) -> ExperimentConfig:
    """Build and validate a config from plain data (as loaded from YAML)."""
    cfg = _build_dataclass(ExperimentConfig, data or {}, "")
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _mark(mark: Any) -> str:
    return f"{mark.line + 1}:{mark.column + 1}"  # PyYAML counts from 0, editors from 1


def _yaml_problem(err: yaml.YAMLError) -> tuple[str, str]:
    """``(position, problem)`` of a PyYAML error as one line each; position is ``LINE:COL`` or ``""``."""
    if not isinstance(err, yaml.MarkedYAMLError) or err.problem_mark is None:
        return "", _one_line(err)  # e.g. a ReaderError (a control character): no line/column
    position = _mark(err.problem_mark)
    problem = _one_line(err.problem or "")
    if err.context:
        # the context's own position helps only where it differs ("while scanning a quoted scalar" at 2:8)
        at = _mark(err.context_mark) if err.context_mark is not None else position
        problem += f" ({_one_line(err.context)}{'' if at == position else ' at ' + at})"
    if "'\\t'" in problem:  # PyYAML writes the tab as its repr
        problem += "; YAML indents with spaces, not tabs"
    return position, problem


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        position, problem = _yaml_problem(err)
        raise ConfigError(f"{path}:{position}: {problem}" if position else f"{path}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:  # unreadable, or not a text file
        raise ConfigError(f"{path}: cannot read it as a UTF-8 YAML file ({_one_line(err)})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data or {}


def dump_yaml(cfg: ExperimentConfig, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.head.mode=official"`` -> ``("model.head.mode", "official")``; values are YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    if not raw.strip():
        return key, ""
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as err:
        position, problem = _yaml_problem(err)
        at = f" at {position}" if position else ""
        raise ConfigError(f"{key}: the value of --set {text!r} is not valid YAML{at}: {problem}") from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """YAML file (optional) + ``key=value`` overrides -> validated config."""
    data = load_yaml(path) if path else {}
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
    return from_dict(data)
