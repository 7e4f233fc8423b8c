"""Every source package is in pyproject's package list, so an installed freshlake is complete."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", "__pycache__"}


def test_every_package_folder_is_listed() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for name, folder in tool["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    listed = set(tool["packages"])
    assert found == listed, (
        f"not listed: {sorted(found - listed)}; listed, no folder: {sorted(listed - found)}"
    )


def test_the_app_folders_are_imported_only_under_the_library_namespace() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        if SKIP & set(path.parts):
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("from assets", "from sensors", "from resources", "from components")):
                offenders.append(f"{path.relative_to(ROOT)}: {stripped}")
    assert offenders == []
