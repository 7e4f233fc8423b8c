"""Read a streams YAML file strictly: a duplicated key or a syntax error names the file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from freshlake.errors import FreshlakeConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated mapping keys (PyYAML keeps the last one silently) and
    reads booleans as YAML 1.2 does: only true/false, so `on: flight_id` stays the key "on".
    Dates stay text (`start: 2026-01-01`), checked by the stream validation."""


_DROPPED = frozenset({"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"})
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            msg = f"line {line}: key {key!r} is written twice in one mapping; keep one of them"
            raise yaml.constructor.ConstructorError(None, None, msg, key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: Path) -> Any:
    """The document in `path`; errors name the file, the line and what to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = (
            f"{path}: no such streams file. Point FRESHLAKE_STREAMS (or --streams) at a YAML file "
            "or a folder of them, or run `freshlake init DIR` to write one."
        )
        raise FreshlakeConfigError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the streams file ({exc})"
        raise FreshlakeConfigError(msg) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or str(exc)
        if problem.startswith("line "):
            where = ""
        msg = f"{path}: {where}{problem} (the file is not valid YAML)"
        raise FreshlakeConfigError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML ({exc})"
        raise FreshlakeConfigError(msg) from None
