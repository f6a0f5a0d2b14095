"""The config reference in README.md, generated from the config models.

    python tools/config_reference.py                     # print the Markdown reference
    python tools/config_reference.py --write README.md   # replace the text between the markers
    python tools/config_reference.py --check README.md   # exit 1 when README's copy is stale

Every section (a pydantic model or pydantic dataclass reachable from :class:`Config`, the
notifier models included: the ``notifiers:`` union is built from the registry) is listed with
where it lives in the YAML file, its intro (the first paragraph of the model's docstring) and
every field's YAML name, type, default and description (``Field(description=...)``; a
subclass that only changes a default keeps its base's). Nothing is described here: a field
without a description renders as undocumented, which ``tests/test_docs.py`` refuses, as it
refuses a README whose section differs from this output. The docs cannot drift from the code.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

if __package__ in (None, ""):  # run as a script: make the checkout's monitor importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from monitor import config as cfg
from monitor.config_types import parse_duration, parse_size
from monitor.notify import PROVIDERS
from monitor.sharding import Shard

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
UNDOCUMENTED = "*(undocumented)*"
COMMAND = "python tools/config_reference.py"

_NONE = type(None)
_UNION_ORIGINS: tuple[Any, ...] = (Union, types.UnionType)
_MAPPINGS: tuple[Any, ...] = (dict, Mapping)  # dict[...] and Mapping[...] annotations


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One row of a section's table."""

    model: str
    attribute: str  # the Python name
    name: str  # the YAML key (the alias, when there is one)
    type: str
    default: str
    description: str


@dataclass(frozen=True, slots=True)
class SectionDoc:
    model: type[Any]
    path: str
    intro: str
    fields: tuple[FieldDoc, ...]

    @property
    def anchor(self) -> str:
        return anchor(self.model)


def anchor(model: type[Any]) -> str:
    return f"config-{model.__name__.lower()}"


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and (issubclass(tp, BaseModel)
                                     or "__pydantic_fields__" in vars(tp))


def model_fields(model: type[Any]) -> dict[str, FieldInfo]:
    """The fields of a pydantic model or pydantic dataclass, in declaration order."""
    if issubclass(model, BaseModel):
        return dict(model.model_fields)
    return dict(cast(dict[str, FieldInfo], model.__pydantic_fields__))


# --------------------------------------------------------------------------- the walk


def section_paths(root: type[Any] = cfg.Config) -> dict[type[Any], str]:
    """Every section model reachable from ``root``, depth first in field order, with its
    place in the YAML file (``platforms.NAME.rules``; ``""`` for the top level)."""
    found: dict[type[Any], str] = {}

    def visit(model: type[Any], path: str) -> None:
        if model in found:
            return
        found[model] = path
        for attribute, info in model_fields(model).items():
            here = f"{path}.{info.alias or attribute}".lstrip(".")
            for section, suffix in _sections_in(info.annotation):
                visit(section, here + suffix)

    visit(root, "")
    return found


def sections(root: type[Any] = cfg.Config) -> list[type[Any]]:
    """Every section model reachable from ``root``, depth first in field order."""
    return list(section_paths(root))


def _sections_in(tp: Any, suffix: str = "") -> Iterator[tuple[type[Any], str]]:
    """The section models inside a field type, each with the path step to reach it:
    ``[]`` for a list item, ``.NAME`` for a map value."""
    if is_section(tp):
        yield tp, suffix
        return
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        yield from _sections_in(args[0], suffix)
    elif origin is list:
        yield from _sections_in(args[0], suffix + "[]")
    elif origin in _MAPPINGS:
        yield from _sections_in(args[1], suffix + ".NAME")
    elif origin in _UNION_ORIGINS:
        for arg in args:
            yield from _sections_in(arg, suffix)


def _walk(tp: Any) -> Iterator[Any]:
    yield tp
    for arg in get_args(tp):
        if not isinstance(arg, FieldInfo | str | int | float | bool):
            yield from _walk(arg)


# --------------------------------------------------------------------------- rendering


def _constraints(metadata: Sequence[Any], container: bool) -> list[str]:
    """``Ge(1)`` -> "≥ 1" and friends, from Field(...) or Annotated metadata."""
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.update({type(m).__name__: m for m in item.metadata})
        else:
            found[type(item).__name__] = item
    words: list[str] = []
    ge, le = found.get("Ge"), found.get("Le")
    gt, lt = found.get("Gt"), found.get("Lt")
    if isinstance(ge, annotated_types.Ge) and isinstance(le, annotated_types.Le):
        words.append(f"{_scalar(ge.ge)} to {_scalar(le.le)}")
    else:
        if isinstance(ge, annotated_types.Ge):
            words.append(f"≥ {_scalar(ge.ge)}")
        if isinstance(gt, annotated_types.Gt):
            words.append(f"> {_scalar(gt.gt)}")
        if isinstance(le, annotated_types.Le):
            words.append(f"≤ {_scalar(le.le)}")
    if isinstance(lt, annotated_types.Lt):
        words.append(f"< {_scalar(lt.lt)}")
    min_len = found.get("MinLen")
    if isinstance(min_len, annotated_types.MinLen) and min_len.min_length > 0:
        words.append(f"at least {min_len.min_length} item" if container else "not empty")
    return words


def _validator_kind(metadata: Sequence[Any]) -> str | None:
    for item in metadata:
        func = getattr(item, "func", None)
        if func is parse_duration:
            return "duration"
        if func is parse_size:
            return "size"
    return None


def _with(text: str, words: list[str]) -> str:
    return f"{text} ({', '.join(words)})" if words else text


def _literal(values: Sequence[Any]) -> str:
    return ", ".join(f"`{_scalar(v)}`" for v in values)


def render_type(tp: Any, metadata: Sequence[Any] = ()) -> str:
    """A reader's name for a field type: ``duration``, ``list of string``, a section link."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return render_type(base, [*metadata, *extra])
    container = origin in (list, *_MAPPINGS)
    kind = _validator_kind(metadata)
    if kind is not None:
        return _with(kind, _constraints(metadata, container))
    if origin in _UNION_ORIGINS:
        args = get_args(tp)
        members = [a for a in args if a is not _NONE]
        text = " or ".join(render_type(a) for a in members)
        words = _constraints(metadata, container)
        return _with(text, words) + (" or `null`" if len(members) < len(args) else "")
    words = _constraints(metadata, container)
    if origin is Literal:
        values = get_args(tp)
        return f"`{_scalar(values[0])}`" if len(values) == 1 else f"one of {_literal(values)}"
    if origin is list:
        (item,) = get_args(tp)
        if get_origin(item) is Literal or (isinstance(item, type) and issubclass(item, enum.Enum)):
            return _with(f"list, each {render_type(item)}", words)
        return _with(f"list of {render_type(item)}", words)
    if origin in _MAPPINGS:
        key, value = get_args(tp)
        return _with(f"map of {render_type(key)} to {render_type(value)}", words)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"one of {_literal([m.value for m in tp])}"
    if is_section(tp):
        return f"[{tp.__name__}](#{anchor(tp)})"
    names: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                             Any: "any", SecretStr: "secret", Shard: "shard `I/N`"}
    name = names.get(tp, getattr(tp, "__name__", str(tp)))
    return _with(name, words)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_duration(seconds: float) -> str:
    """60.0 -> ``1m``, 0.25 -> ``250ms``: the largest unit that is exact."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def render_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = cast(Callable[[], Any], info.default_factory)()
        if isinstance(value, BaseModel):
            return "(its defaults)"
        if isinstance(value, Mapping):
            value = dict(value)  # a shared read-only default reads like the dict it is
        return f"`{json.dumps(value, default=str)}`"
    if info.default is PydanticUndefined:
        return "**required**"
    value = info.default
    kind = _validator_kind(_all_metadata(info))
    if value is not None and kind == "duration":
        return f"`{format_duration(float(value))}`"
    if value is not None and kind == "size":
        return f"`{format_size(int(value))}`"
    if isinstance(value, str) and not value:
        return '`""`'
    return f"`{_scalar(value)}`"


def _all_metadata(info: FieldInfo) -> list[Any]:
    """The field's metadata, plus that of an ``Annotated`` inside ``X | None``."""
    found = list(info.metadata)
    for tp in _walk(info.annotation):
        if get_origin(tp) is Annotated:
            found.extend(get_args(tp)[1:])
    return found


def describe(model: type[Any], attribute: str) -> str:
    """The field's own description, or that of the nearest base class declaring the field
    (a subclass that only changes a default, as ``Defaults`` does, keeps the meaning)."""
    for klass in model.__mro__:
        if not is_section(klass):
            continue
        info = model_fields(klass).get(attribute)
        if info is not None and info.description:
            return info.description
    return UNDOCUMENTED


def intro(model: type[Any]) -> str:
    """The first paragraph of the model's own docstring (not a base class's), on one line;
    for a notifier, what default routing sends it (the provider's own ``pages`` flag)."""
    doc = vars(model).get("__doc__") or ""
    text = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    provider = next((cls for cls in PROVIDERS if cls.config_model is model), None)
    if provider is not None:
        text += (" Default routing sends it **pages**: protected accounts' vanishing, "
                 "recovery and blindness." if provider.pages else
                 " Default routing sends it **chat**: everything that does not page.")
    return text.strip()


def heading(model: type[Any], path: str) -> str:
    """Where the section lives: ``The top level``, ``notifiers.NAME`` with ``type: slack``."""
    if not path:
        return "The top level"
    selector = model_fields(model).get("type")
    values = get_args(selector.annotation) if selector is not None else ()
    if selector is not None and get_origin(selector.annotation) is Literal and len(values) == 1:
        return f"`{path}` with `type: {values[0]}`"
    return f"`{path}`"


def _is_secret(tp: Any) -> bool:
    return tp is SecretStr or any(a is SecretStr for a in get_args(tp))


def section_doc(model: type[Any], path: str | None = None) -> SectionDoc:
    where = section_paths().get(model, model.__name__) if path is None else path
    rows = []
    for attribute, info in model_fields(model).items():
        name = info.alias or attribute
        type_text = render_type(info.annotation, info.metadata)
        if _is_secret(info.annotation):
            type_text += f"; or `{name}_file`: a file holding it"
        rows.append(FieldDoc(model.__name__, attribute, name, type_text, render_default(info),
                             describe(model, attribute)))
    return SectionDoc(model, heading(model, where), intro(model), tuple(rows))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_reference() -> str:
    """The Markdown reference of every config section and field."""
    out = [
        "### Config reference",
        "",
        "Generated from the config models (`monitor/config.py`, and each notifier's in its "
        f"module under `monitor/notify/`) by `{COMMAND} --write README.md` "
        "(`tests/test_docs.py` fails when this copy is out of date). Durations: `250ms`, "
        "`30s`, `5m`, `1h30m`, `1d`. Sizes: `512KiB`, `1MiB`. A *secret* field `x` may "
        "instead be given as `x_file: /path`; any string may use `${ENV_VAR}` or "
        "`${ENV_VAR:-default}`.",
    ]
    for model, path in section_paths().items():
        doc = section_doc(model, path)
        out += ["", f'<a id="{doc.anchor}"></a>', "",
                f"#### {doc.path} ({doc.model.__name__})", ""]
        if doc.intro:
            out += [doc.intro, ""]
        out += ["| field | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{f.name}` | {_cell(f.type)} | {_cell(f.default)} | {_cell(f.description)} |"
                for f in doc.fields]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- README


def extract_section(text: str) -> str:
    """What stands between the markers (ValueError when they are missing)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {START} ... {END} markers (in this order)")
    return text[start + len(START):end].strip("\n") + "\n"


def replace_section(text: str, reference: str) -> str:
    """``text`` with the markers' contents replaced by ``reference``."""
    extract_section(text)  # the markers exist
    start, end = text.find(START), text.find(END)
    return f"{text[:start]}{START}\n\n{reference.strip()}\n\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND,
                                     description="Generate the config reference Markdown.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE",
                       help=f"replace the text between {START} and {END} in FILE")
    group.add_argument("--check", metavar="FILE",
                       help="exit 1 when FILE's section differs from the generated one")
    args = parser.parse_args(argv)
    reference = config_reference()
    target = args.write or args.check
    if target is None:
        sys.stdout.write(reference)
        return 0
    path = Path(target)
    try:
        text = path.read_text(encoding="utf-8")
        current = extract_section(text)
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if current.strip() != reference.strip():
            print(f"{path}: the config reference is out of date; run "
                  f"`{COMMAND} --write {path}`", file=sys.stderr)
            return 1
        return 0
    path.write_text(replace_section(text, reference), encoding="utf-8")
    print(f"{path}: config reference written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
