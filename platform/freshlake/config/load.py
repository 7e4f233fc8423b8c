"""Find and load the streams file: the one source of truth every entry point reads streams from."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from freshlake.config.validate import Document, build_specs
from freshlake.config.yaml_source import read_yaml
from freshlake.errors import FreshlakeConfigError
from freshlake.streams import StreamSpec

STREAMS_ENV = "FRESHLAKE_STREAMS"
DEFAULT_FILE = "streams.yaml"
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, kw_only=True)
class StreamsConfig:
    """The validated streams and where they came from."""

    path: Path
    streams: tuple[StreamSpec, ...]

    def stream(self, name: str) -> StreamSpec:
        for spec in self.streams:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.streams) or "none"
        msg = f"unknown stream {name!r} in {self.path}: known streams are {known}"
        raise FreshlakeConfigError(msg)

    @property
    def document_streams(self) -> tuple[StreamSpec, ...]:
        """Streams that are embedded and searchable."""
        return tuple(s for s in self.streams if s.document is not None)

    @property
    def topics(self) -> dict[str, int]:
        return {s.topic: s.partitions for s in self.streams}


def streams_path(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    default: str | os.PathLike[str] | None = None,
) -> Path:
    """`path`, else `$FRESHLAKE_STREAMS`, else `default`, else `./streams.yaml`."""
    env = os.environ if env is None else env
    chosen = path or (env.get(STREAMS_ENV) or "").strip() or default or DEFAULT_FILE
    return Path(chosen).expanduser().resolve()


def _files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not files:
        msg = f"{path}: the streams folder holds no .yaml file; add one with a `streams:` list"
        raise FreshlakeConfigError(msg)
    return files


def load_streams(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    default: str | os.PathLike[str] | None = None,
) -> StreamsConfig:
    """Read and validate the streams file (or folder of files) that `streams_path` resolves.

    Raises `FreshlakeConfigError` listing every problem, each naming the file, stream and field.
    """
    resolved = streams_path(path, env=env, default=default)
    documents = [Document(source=str(f), content=read_yaml(f)) for f in _files(resolved)]
    return streams_from_documents(documents, path=resolved)


def streams_from_documents(documents: Sequence[Document], *, path: Path) -> StreamsConfig:
    specs, problems = build_specs(documents)
    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        msg = f"the streams configuration has {count}:\n" + "\n".join(f"- {p}" for p in problems)
        raise FreshlakeConfigError(msg)
    if not specs:
        msg = f"{path}: no streams declared; add at least one entry under `streams:`"
        raise FreshlakeConfigError(msg)
    return StreamsConfig(path=path, streams=specs)
