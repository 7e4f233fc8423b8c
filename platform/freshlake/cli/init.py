"""`freshlake init DIR`: a new project that runs freshlake on your own topics, not a fork of it."""

from __future__ import annotations

import argparse
import re
from importlib import metadata, resources
from pathlib import Path

from freshlake.cli.args import UsageError

# Written file -> template in freshlake.config's package data (`templates/*`).
FILES = {
    "pyproject.toml": "pyproject.toml.tmpl",
    "workspace.yaml": "workspace.yaml.tmpl",
    "definitions.py": "definitions.py.tmpl",
    "streams.yaml": "streams.yaml.tmpl",
    "README.md": "README.md.tmpl",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("init", help="write a new project: streams.yaml, definitions.py, workspace")
    parser.add_argument("directory", help="project folder (created if missing; files are never overwritten)")
    parser.add_argument("--name", help="project name (default: the folder's name)")
    parser.set_defaults(func=lambda args: run_init(directory=args.directory, name=args.name))


def run_init(*, directory: str | Path, name: str | None = None) -> int:
    """Write the skeleton into `directory`; refuses, naming them, when any of its files exist."""
    target = Path(directory).expanduser().resolve()
    if target.exists() and not target.is_dir():
        msg = f"{target} is a file: give a folder (new or without the project files) to write into"
        raise UsageError(msg)
    present = [file for file in FILES if (target / file).exists()]
    if present:
        msg = (
            f"{target} already has {', '.join(present)}: freshlake init never overwrites; "
            "move them away or choose another folder"
        )
        raise UsageError(msg)
    values = {"project": project_name(name or target.name), "freshlake_version": _version()}
    target.mkdir(parents=True, exist_ok=True)
    templates = resources.files("freshlake.config") / "templates"
    for file, template in FILES.items():
        text = templates.joinpath(template).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        (target / file).write_text(text, encoding="utf-8")
    print(f"wrote {', '.join(FILES)} to {target}")
    print(f"next: cd {target} && dagster definitions validate -w workspace.yaml && freshlake dev")
    return 0


def project_name(text: str) -> str:
    """A distribution name (PEP 508) made from `text`: lowercase letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"freshlake-{name}".rstrip("-")
    return name


def _version() -> str:
    try:
        return metadata.version("freshlake")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0.1.0"
