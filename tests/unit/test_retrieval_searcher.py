"""`Searcher` over real LanceDB tables behind the rollout alias: documents, freshness, errors."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from freshlake.embed.models import HashEmbedder
from freshlake.retrieval import (
    MAX_K,
    Document,
    FreshlakeSearchError,
    Hit,
    Searcher,
    SearchResult,
    StaleDataError,
)
from tests.demo_streams import demo_stream
from tests.retrieval_tables import chunk, demo_tables, write


class Rollout(HashEmbedder):
    model_version = "2"  # another vector space of the same dimension


@pytest.fixture
def world(tmp_path):
    uri = str(tmp_path / "lance")
    embedder = HashEmbedder()
    flights, policies = demo_stream("flights"), demo_stream("policies")
    demo_tables(uri, embedder)
    searcher = Searcher(
        streams=[flights, policies, demo_stream("bookings")],
        delta_root=str(tmp_path / "delta"),
        lance_root=uri,
        embedder=[embedder, Rollout()],
        alias_ttl_s=0,
    )
    return uri, searcher, embedder


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
def test_documents_with_freshness_per_stream(world, mode: str) -> None:
    _, searcher, _ = world
    result = searcher.search("my flight to New York was cancelled, can I get a refund", mode=mode, k=3)
    assert isinstance(result, SearchResult) and result.hits == []
    keys = [(d.stream, d.key) for d in result.documents]
    assert {("flights", "UA1"), ("policies", "refunds")} <= set(keys)
    assert all(isinstance(d, Document) and d.passages for d in result.documents)
    flights = result.freshness["flights"]
    assert flights.table is not None and flights.table.startswith("flights__")
    assert flights.rows == 4 and flights.lance_version is not None
    assert flights.model == (HashEmbedder.model_name, HashEmbedder.model_version)
    assert 29 < flights.event_time_lag_s < 120  # newest flight event is ~30 s old
    assert result.freshness["policies"].event_time_lag_s > 7000
    bookings = result.freshness["bookings"]  # declared, never embedded: searched, reported empty
    assert bookings.table is None and bookings.rows == 0 and bookings.event_time_lag_s is None
    assert result.stale == () and result.read_your_writes is None
    assert (flights.current_version, flights.searchable_offsets) == (None, {})  # no embeddings run


def test_chunks_where_and_stream_selection(world) -> None:
    _, searcher, _ = world
    result = searcher.search("flight", chunks=True, k=2, streams=["flights"], where="status = 'delayed'")
    assert result.documents == [] and [h.key for h in result.hits] == ["DL2"]
    assert isinstance(result.hits[0], Hit) and set(result.freshness) == {"flights"}


def test_new_versions_and_swapped_tables_are_searched_without_reopening(world) -> None:
    uri, searcher, embedder = world
    before = searcher.search("volcanic ash", mode="fts", streams=["flights"])
    assert before.documents == []
    flights = demo_stream("flights")
    write(
        uri,
        flights,
        [chunk("flights", "BA9", "Flight BA9 diverted by volcanic ash.", 9, timedelta(0))],
        embedder,
    )
    after = searcher.search("volcanic ash", mode="fts", streams=["flights"])
    assert [d.key for d in after.documents] == ["BA9"]
    assert after.freshness["flights"].lance_version > before.freshness["flights"].lance_version

    # A rollout: the stream's documents re-embedded into another vector space, then swapped in.
    write(
        uri,
        flights,
        [chunk("flights", "LH7", "Flight LH7 diverted by volcanic ash.", 10, timedelta(0))],
        Rollout(),
    )
    swapped = searcher.search("volcanic ash diverted", mode="vector", streams=["flights"], k=5)
    assert [d.key for d in swapped.documents] == ["LH7"]  # only the new live table is read
    assert swapped.freshness["flights"].model == (Rollout.model_name, "2")


def test_staleness_report_and_fail(world) -> None:
    _, searcher, _ = world
    report = searcher.search("refund", max_staleness_s=600, streams=["flights", "policies", "bookings"])
    assert report.stale == ("policies", "bookings")  # 2 h old; no data at all
    assert report.freshness["flights"].stale is False and report.freshness["policies"].stale is True
    assert report.documents  # answered anyway
    with pytest.raises(StaleDataError, match=r"max_staleness_s=600.*policies: event-time lag") as caught:
        searcher.search("refund", max_staleness_s=600, staleness="fail", streams=["flights", "policies"])
    assert caught.value.stale == ("policies",) and caught.value.freshness["policies"].event_time_lag_s > 7000


def test_after_that_is_never_reached_says_so(world) -> None:
    _, searcher, _ = world
    started = time.monotonic()
    result = searcher.search("flight", after={"flights": {"0": 5, 2: 0}}, timeout_s=0.2)
    assert 0.2 <= time.monotonic() - started < 5
    ryw = result.read_your_writes
    assert ryw is not None and not ryw.satisfied and ryw.waited_s >= 0.2
    assert {(p.stream, p.partition, p.offset, p.searchable) for p in ryw.pending} == {
        ("flights", 0, 5, None),
        ("flights", 2, 0, None),
    }
    assert result.documents  # the answer still comes, marked


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"query": ""}, "query is empty"),
        ({"query": "  \n"}, "query is empty"),
        ({"query": "x" * 5000}, "keep it under"),
        ({"streams": ["nope"]}, "unknown stream 'nope': searchable streams are flights, policies"),
        ({"streams": ["feedback"]}, "unknown stream 'feedback'"),  # declared, but not embedded
        ({"streams": "flights"}, r"use \['flights'\]"),
        ({"streams": []}, "streams is empty"),
        ({"mode": "semantic"}, "unknown search mode"),
        ({"k": 0}, "k must be an integer from 1 to 1000"),
        ({"k": 10**9}, "k must be an integer"),
        ({"k": True}, "k must be an integer"),
        ({"where": "status = "}, "cannot be evaluated"),
        ({"where": "  "}, "non-empty SQL condition"),
        ({"max_staleness_s": -1}, "max_staleness_s must be"),
        ({"staleness": "ignore"}, "staleness must be"),
        ({"timeout_s": float("nan")}, "timeout_s must be"),
        ({"after": {"flights": {"x": 1}}}, "partition number"),
        ({"after": {"flights": {0: -1}}}, "partition number"),
        ({"after": {"flights": 3}}, "must map partition -> offset"),
        ({"after": {"nope": {0: 1}}}, "unknown stream 'nope'"),
    ],
)
def test_bad_requests_say_the_fix(world, options: dict, message: str) -> None:
    _, searcher, _ = world
    options = {"query": "flight", "streams": ["flights", "policies"], **options}
    with pytest.raises(FreshlakeSearchError, match=message):
        searcher.search(options.pop("query"), **options)
    assert MAX_K == 1000


def test_open_from_a_streams_file_and_the_environment(tmp_path, monkeypatch) -> None:
    from tests.demo_streams import EXAMPLE_FILE

    monkeypatch.setenv("FRESHLAKE_HOME", str(tmp_path))
    searcher = Searcher.open(streams=EXAMPLE_FILE, embedder=HashEmbedder())
    assert searcher.streams == ("flights", "bookings", "policies")
    assert searcher.lance_root == str(tmp_path / "lance")
    result = searcher.search("anything")  # nothing embedded yet: an empty answer, not an error
    assert result.documents == [] and all(f.table is None for f in result.freshness.values())
