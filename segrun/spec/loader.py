"""TOML files -> Spec: `extends` merging, KEY=VALUE overrides, typed conversion, checks.

Every error is a SpecError whose one-line message starts with the file (or the override) the
offending key came from, then the dotted key, then what was expected.
"""
from __future__ import annotations

import hashlib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import attrs

from segrun.errors import UserError, closest, did_you_mean
from segrun.spec.schema import LossSpec, ModelSpec, Spec, TransformStep

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class SpecError(UserError):
    """A spec that cannot be loaded; the message names the file, the key and the fix."""


KeyPath = tuple  # ("loss", 0, "weight")
Origins = dict  # KeyPath -> where that value was written (a file, or an override)


def dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


# ---- reading files and extends --------------------------------------------------------------

def _read_toml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read the spec ({error.__class__.__name__}: {error})") from None
    return parse_toml(text, str(path))


def parse_toml(text: str, source: str) -> dict:
    """TOML text as a table, or a SpecError naming `source`: invalid TOML, or nesting deeper than
    the parser can follow (tomllib recurses once per level)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{source}: invalid TOML: {error}") from None
    except RecursionError:
        raise SpecError(f"{source}: invalid TOML: arrays or tables nested too deeply to read (a spec needs a few "
                        "levels)") from None


def _record_origins(table: Any, source: str, path: KeyPath, origins: Origins) -> None:
    origins[path] = source
    if isinstance(table, dict):
        for key, value in table.items():
            _record_origins(value, source, path + (key,), origins)


def _merge(base: dict, child: dict) -> dict:
    """Tables merge key by key, recursively; anything else (arrays included) replaces."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_with_extends(path: Path, chain: tuple[Path, ...]) -> tuple[dict, Origins]:
    chain = (*chain, path.resolve())
    table = _read_toml(path)
    origins: Origins = {}
    base_name = table.pop("extends", None)
    if base_name is None:
        _record_origins(table, str(path), (), origins)
        return table, origins
    if not isinstance(base_name, str):
        raise SpecError(f"{path}: extends: expected a path to a base spec (a string), got {base_name!r}")
    base_path = path.parent / base_name
    if not base_path.is_file():
        raise SpecError(f"{path}: extends: no such file {base_path}; the path is relative to {path.parent}")
    if base_path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, base_path.resolve()))
        raise SpecError(f"{path}: extends: cycle {cycle}; remove one of these extends")
    base, origins = _read_with_extends(base_path, chain)
    _record_origins(table, str(path), (), origins)
    return _merge(base, table), origins


# ---- overrides ------------------------------------------------------------------------------

OVERRIDE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.([A-Za-z_][A-Za-z0-9_-]*|[0-9]+))*")
# A value that is not TOML but holds no quote, bracket, brace, comma, '=', '#' or whitespace is taken
# as a string: names and paths (model.name=hrnet, data.root=/data/cityscapes, init=runs/a-1234abcd).
BARE_STRING = re.compile(r"[^\s\"'\[\]{},=#]+")


def _shown(text: str, longest: int = 80) -> str:
    """`text` quoted for an error message, cut to `longest` characters (an override can be megabytes)."""
    return repr(text) if len(text) <= longest else f"{text[:longest]!r}... ({len(text):,} characters)"


def _parse_override_value(raw: str, override: str):
    try:
        parsed = tomllib.loads(f"value = {raw}")
    except tomllib.TOMLDecodeError:
        parsed = None
    except RecursionError:
        raise SpecError(f"override {_shown(override)}: nested too deeply to read") from None
    if parsed is not None and list(parsed) == ["value"]:
        return parsed["value"]
    if BARE_STRING.fullmatch(raw):  # a path, or the shell ate the quotes of model.name="hrnet"
        return raw
    raise SpecError(f"override {_shown(override)}: the value {_shown(raw)} is not a TOML value (quote strings: key='\"text\"')")


def apply_override(table: dict, origins: Origins, override: str) -> None:
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not OVERRIDE_KEY.fullmatch(key):
        raise SpecError(f"override {_shown(override)}: expected KEY=VALUE with a dotted key, e.g. trainer.epochs=400")
    value = _parse_override_value(raw.strip(), override)
    path = tuple(int(part) if part.isdigit() else part for part in key.split("."))
    node: Any = table
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = dotted(path[:depth]) if depth else "the spec"
        if isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise SpecError(f"override {_shown(override)}: {where} is an array of {len(node)}; index it with 0..{len(node) - 1}")
        elif isinstance(node, dict):
            part = str(part)
            if not last and part not in node:
                node[part] = {}
                origins[path[: depth + 1]] = f"override {_shown(override)}"
        else:
            raise SpecError(f"override {_shown(override)}: {where} is a value, not a table")
        if last:
            node[part] = value
        else:
            node = node[part]
    for existing in [p for p in origins if p[: len(path)] == path]:
        del origins[existing]
    _record_origins(value, f"override {_shown(override)}", path, origins)


# ---- conversion into attrs classes ----------------------------------------------------------

class KeyProblem(Exception):
    """What is wrong with the value at `path` of a spec; load() turns it into a SpecError naming the
    file or override that wrote that key. Checks outside this package (segrun.build) raise it too."""

    def __init__(self, path: KeyPath, problem: str):
        super().__init__(problem)
        self.path = path
        self.problem = problem


SCALARS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
           str: ("a string", "strings")}


def _describe(type_) -> str:
    origin, args = typing.get_origin(type_), typing.get_args(type_)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is tuple:
        items = "tables" if attrs.has(args[0]) else SCALARS[args[0]][1]
        return f"an array of {items}" if args[-1] is Ellipsis else f"an array of {len(args)} {items}"
    if attrs.has(type_):
        return "a table"
    return SCALARS[type_][0]


def _frozen(value):
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def _convert(value, type_, path: KeyPath):
    origin, args = typing.get_origin(type_), typing.get_args(type_)
    if origin is Literal:
        if isinstance(value, type(args[0])) and value in args:
            return value
        hint = did_you_mean(value, args) if isinstance(value, str) else ""
        raise KeyProblem(path, f"expected {_describe(type_)}, got {value!r}{hint}")
    if origin in (Union, types.UnionType):
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _convert(value, arm, path)
            except KeyProblem as error:
                if error.path != path:  # the value had the right shape; report what is inside it
                    raise
        raise KeyProblem(path, f"expected {_describe(type_)}, got {value!r}")
    if type_ is TransformStep:
        return _transform_step(value, path)
    if type_ is LossSpec:
        return _loss(value, path)
    if type_ is ModelSpec:
        return _model(value, path)
    if attrs.has(type_):
        return build(type_, value, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise KeyProblem(path, f"expected {_describe(type_)}, got {value!r}")
        if args[-1] is Ellipsis:
            return tuple(_convert(item, args[0], path + (i,)) for i, item in enumerate(value))
        if len(value) != len(args):
            raise KeyProblem(path, f"expected {_describe(type_)}, got {value!r}")
        return tuple(_convert(item, arm, path + (i,)) for i, (item, arm) in enumerate(zip(value, args)))
    is_bool = isinstance(value, bool)
    if type_ is bool and is_bool or type_ is str and isinstance(value, str) or type_ is int and isinstance(value, int) and not is_bool:
        return value
    if type_ is float and isinstance(value, (int, float)) and not is_bool:
        return float(value)
    raise KeyProblem(path, f"expected {_describe(type_)}, got {value!r}")


def _transform_step(table, path: KeyPath) -> TransformStep:
    if not isinstance(table, dict):
        raise KeyProblem(path, f'expected a table such as {{ name = "HorizontalFlip", p = 0.5 }}, got {table!r}')
    name = table.get("name")
    if not isinstance(name, str):
        raise KeyProblem(path + ("name",), f"expected the albumentations transform's class name (a string), got {name!r}")
    params = {key: _frozen(value) for key, value in table.items() if key != "name"}
    return TransformStep(name=name, params=params)


LOSS_FIELDS = ("name", "weight", "class_weights")  # the keys of a [[loss]] table that are not options
# the keys of [model] that are not the model class's own options
MODEL_FIELDS = ("name", "backbone", "align_corners", "pretrained", "pretrained_skip", "backbone_init")


def _model(table, path: KeyPath) -> ModelSpec:
    if not isinstance(table, dict):
        raise KeyProblem(path, f'expected a table such as {{ name = "hrnet", backbone = "hrnet_w48" }}, got {table!r}')
    model = build(ModelSpec, {key: value for key, value in table.items() if key in MODEL_FIELDS}, path)
    return attrs.evolve(model, options={key: _frozen(value) for key, value in table.items() if key not in MODEL_FIELDS})


def _loss(table, path: KeyPath) -> LossSpec:
    if not isinstance(table, dict):
        raise KeyProblem(path, f'expected a table such as {{ name = "ce", weight = 1.0 }}, got {table!r}')
    loss = build(LossSpec, {key: value for key, value in table.items() if key in LOSS_FIELDS}, path)
    return attrs.evolve(loss, options={key: _frozen(value) for key, value in table.items() if key not in LOSS_FIELDS})


TOML_INTEGERS = range(-2**63, 2**63)  # TOML's integers are 64-bit; Python's TOML parser reads any size


def _check_integers(value, path: KeyPath = ()) -> None:
    """Raise KeyProblem at the first integer TOML does not allow, anywhere in a table."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_integers(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_integers(item, path + (index,))
    elif isinstance(value, int) and not isinstance(value, bool) and value not in TOML_INTEGERS:
        raise KeyProblem(path, f"{value} is beyond TOML's 64-bit integers (-2^63 to 2^63-1)")


def build(cls, table, path: KeyPath = ()):
    """Convert one TOML table into the attrs class `cls`, checking keys, types and ranges."""
    if not isinstance(table, dict):
        raise KeyProblem(path, f"expected a table, got {table!r}")
    fields = {f.name: f for f in attrs.fields(cls)}
    for key in table:
        if key not in fields:
            match = closest(key, fields)
            suggestion = f"; did you mean {dotted(path + (match,))}?" if match else ""
            raise KeyProblem(path + (key,), f"unknown key{suggestion} (known here: {', '.join(fields)})")
    values = {}
    for name, spec_field in fields.items():
        if name not in table:
            if spec_field.default is attrs.NOTHING:
                raise KeyProblem(path + (name,), f"missing required key ({_describe(spec_field.type)})")
            continue
        value = _convert(table[name], spec_field.type, path + (name,))
        if spec_field.validator is not None:
            try:
                spec_field.validator(None, spec_field, value)
            except ValueError as error:
                raise KeyProblem(path + (name,), str(error)) from None
        values[name] = value
    return cls(**values)


def _source(origins: Origins, path: KeyPath, main: str) -> str:
    for length in range(len(path), -1, -1):
        if path[:length] in origins:
            return origins[path[:length]]
    return main


# ---- public API -----------------------------------------------------------------------------

Check = typing.Callable[[Spec], None]  # raises KeyProblem; segrun.build.check_spec is the full one


def _checked(table: dict, check: Check | None, source_of: typing.Callable[[KeyPath], str]) -> Spec:
    """The Spec of a table, type- and range-checked and then `check`ed; a problem is a SpecError
    naming source_of(the key's path) and the key."""
    try:
        _check_integers(table)
        spec = build(Spec, table)
        if check is not None:
            check(spec)
    except KeyProblem as error:
        raise SpecError(f"{source_of(error.path)}: {dotted(error.path)}: {error.problem}") from None
    return spec


def load(path, overrides=(), check: Check | None = None) -> Spec:
    """Read a spec file, resolve its `extends` chain, apply KEY=VALUE overrides, convert and check
    types and ranges, then run `check` (names and cross-section rules: segrun.build.load_spec)."""
    path = Path(path)
    table, origins = _read_with_extends(path, ())
    for override in overrides:
        apply_override(table, origins, override)
    return _checked(table, check, lambda key: _source(origins, key, str(path)))


def load_section(path: Path, cls):
    """A TOML file (no extends, no overrides) as the attrs class `cls`, or a SpecError."""
    try:
        table = _read_toml(Path(path))
        _check_integers(table)
        return build(cls, table)
    except KeyProblem as error:
        raise SpecError(f"{path}: {dotted(error.path)}: {error.problem}") from None


def to_table(value):
    """A Spec (or part of one) as plain TOML data; unset optional keys are left out."""
    if isinstance(value, TransformStep):
        return {"name": value.name, **{key: to_table(v) for key, v in value.params.items()}}
    if isinstance(value, (LossSpec, ModelSpec)):
        fields = LOSS_FIELDS if isinstance(value, LossSpec) else MODEL_FIELDS
        fixed = {key: to_table(getattr(value, key)) for key in fields if getattr(value, key) is not None}
        return {**fixed, **{key: to_table(v) for key, v in value.options.items()}}
    if attrs.has(type(value)):
        return {f.name: to_table(getattr(value, f.name)) for f in attrs.fields(type(value)) if getattr(value, f.name) is not None}
    if isinstance(value, (tuple, list)):
        return [to_table(v) for v in value]
    if isinstance(value, dict):
        return {key: to_table(v) for key, v in value.items()}
    return value


def dumps(spec: Spec) -> str:
    """The resolved spec as TOML; `loads` of this text gives back an equal Spec."""
    import tomli_w  # here, not at the top: the benchmarks run where only the reading side is installed

    return tomli_w.dumps(to_table(spec))


def loads(text: str, source: str = "<spec>", check: Check | None = None) -> Spec:
    """Load a resolved spec from TOML text (no extends, no overrides), checked as in `load`."""
    return _checked(parse_toml(text, source), check, lambda key: source)


def spec_hash(spec: Spec) -> str:
    """8 hex digits of the SHA-256 of the resolved spec: names the run folder."""
    return hashlib.sha256(dumps(spec).encode()).hexdigest()[:8]
