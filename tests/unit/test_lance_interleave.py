"""Two applies to one LanceDB chunk table, interleaved at every step of one of them: the key ends
with exactly the chunks of its newest document (or none after a newer delete), never a mix."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest

from freshlake.chunks import Chunk, Provenance
from freshlake.embed.models import HashEmbedder
from freshlake.lance.store import ChunkStore
from freshlake.ordering import split_version, version_of

DIM = 16
EMBEDDER = HashEmbedder(dimension=DIM)


def v(n: int) -> str:
    return version_of(f"{n:016x}", partition=0, offset=n)


def doc(n_chunks: int, revision: int) -> list[Chunk]:
    provenance = Provenance(
        source_topic="t",
        source_partition=0,
        source_offset=revision,
        source_version=v(revision),
        raw_delta_version=1,
        current_delta_version=1,
        event_time=None,
        ingested_at=None,
    )
    return [
        Chunk(stream="s", key="K", chunk_index=i, text=f"K part {i} rev {revision}", provenance=provenance)
        for i in range(n_chunks)
    ]


class Interleaving(ChunkStore):
    """A store that runs `other` once, at its `at`-th step (a read, a merge or a delete)."""

    def __init__(self, *, at: int, other: Callable[[], None], **kwargs) -> None:
        super().__init__(**kwargs)
        self.at, self.other, self.steps = at, other, 0

    def _step(self) -> None:
        self.steps += 1
        if self.steps == self.at:
            self.other()

    def _newest_versions(self, keys):
        self._step()
        return super()._newest_versions(keys)

    def _merge(self, *args, **kwargs):
        self._step()
        out = super()._merge(*args, **kwargs)
        self._step()
        return out

    def _delete(self, clauses, writes):
        self._step()
        return super()._delete(clauses, writes)


def write(store: ChunkStore, *, chunks: list[Chunk], delete: int | None, read_at: int, deleted_at) -> None:
    store.apply(
        upserts=chunks,
        vectors=EMBEDDER.embed([c.text for c in chunks]).reshape(len(chunks), DIM),
        deletes_keys={} if delete is None else {"K": v(delete)},
        keep_counts={"K": (len(chunks), chunks[0].provenance.source_version)} if chunks else {},
        embedder_name=EMBEDDER.model_name,
        embedder_version=EMBEDDER.model_version,
        read_at=read_at,
        deleted_in_current=lambda keys: {"K": v(deleted_at)} if deleted_at is not None else {},
    )


def run(spec, store: ChunkStore, *, read_at: int, deleted_at: int | None) -> None:
    """One writer: a delete revision, or a document (chunk count, revision)."""
    if isinstance(spec, int):
        write(store, chunks=[], delete=spec, read_at=read_at, deleted_at=deleted_at)
    else:
        write(store, chunks=doc(*spec), delete=None, read_at=read_at, deleted_at=deleted_at)


# (newest writer, stale writer): chunks (count, revision) or a delete revision
CASES = {
    "shorter newer document vs longer stale one": ((2, 5), (4, 3)),
    "newer delete vs stale document": (5, (4, 3)),
    "longer newer document vs shorter stale one": ((4, 5), (1, 3)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("interrupted", ["newest", "stale"])
def test_two_applies_interleaved_at_every_step_leave_the_newest_document(tmp_path, case, interrupted) -> None:
    newest, stale = CASES[case]
    deleted_at = newest if isinstance(newest, int) else None
    expected = [] if deleted_at is not None else [c.chunk_id for c in doc(*newest)]
    at = 1
    while True:
        uri = str(tmp_path / f"lance-{at}")
        base = ChunkStore(uri=uri, table_name="chunks", dimension=DIM)
        first = doc(3, 1)
        base.apply(
            upserts=first,
            vectors=EMBEDDER.embed([c.text for c in first]).reshape(3, DIM),
            deletes_keys={},
            keep_counts={"K": (3, v(1))},
            embedder_name=EMBEDDER.model_name,
            embedder_version=EMBEDDER.model_version,
        )
        read_at = base.version  # both writers read `current` and the table here

        outer, inner = (newest, stale) if interrupted == "newest" else (stale, newest)
        inner_store = ChunkStore(uri=uri, table_name="chunks", dimension=DIM)
        store = Interleaving(
            at=at,
            other=partial(run, inner, inner_store, read_at=read_at, deleted_at=deleted_at),
            uri=uri,
            table_name="chunks",
            dimension=DIM,
        )
        run(outer, store, read_at=read_at, deleted_at=deleted_at)
        if store.steps < at:  # the interruption point lies past the outer apply's last step: done
            break
        rows = store.table.search().select(["chunk_id", "source_version"]).to_arrow().to_pylist()
        got = sorted(r["chunk_id"] for r in rows)
        assert got == sorted(expected), f"{case}, {interrupted} interrupted at step {at}: {rows}"
        revisions = {split_version(r["source_version"])[2] for r in rows}
        assert revisions <= {5}, f"{case}, {interrupted} interrupted at step {at}: {rows}"
        at += 1
    assert at > 3  # the interruption points covered the read, the merge and the deletes


def test_the_current_lookup_apply_is_given_answers_from_a_real_current_table(tmp_path) -> None:
    """The callable `sync_embeddings` hands to `apply` (a positional `keys`, as `apply` calls it)."""
    import polars as pl

    from freshlake.lance.sync import deletes_in

    uri = str(tmp_path / "current")
    pl.DataFrame(
        {"key": ["K", "L", "M"], "version": [v(5), v(2), v(7)], "is_deleted": [True, False, True]}
    ).write_delta(uri)

    assert deletes_in(uri)(["K", "L"]) == {"K": v(5)}
    assert deletes_in(uri)([]) == {}
    assert deletes_in(str(tmp_path / "absent"))(["K"]) == {}
