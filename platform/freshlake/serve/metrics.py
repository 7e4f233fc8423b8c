"""Prometheus metrics of the retrieval service, one registry per app (tests make several)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from freshlake.retrieval import Searcher

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RESULT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 1000)


class StreamCollector(Collector):
    """Per-stream freshness read at scrape time: lag, rows, versions, searchable offsets."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher

    def collect(self):
        lag = GaugeMetricFamily(
            "freshlake_stream_event_time_lag_seconds",
            "now - the newest searchable event time (NaN: no searchable data)",
            labels=["stream"],
        )
        rows = GaugeMetricFamily("freshlake_stream_rows", "chunks in the live table", labels=["stream"])
        version = GaugeMetricFamily(
            "freshlake_stream_lance_version", "LanceDB version of the live table", labels=["stream"]
        )
        offsets = GaugeMetricFamily(
            "freshlake_stream_searchable_offset",
            "last Kafka offset searchable, per partition",
            labels=["stream", "partition"],
        )
        try:
            freshness = self.searcher.freshness()
        except Exception:  # a scrape reports what it can; the error is in the log
            log.exception("freshness for metrics failed")
            freshness = {}
        for name, fresh in freshness.items():
            seconds = fresh.event_time_lag_s
            lag.add_metric([name], float("nan") if seconds is None else seconds)
            rows.add_metric([name], fresh.rows)
            if fresh.lance_version is not None:
                version.add_metric([name], fresh.lance_version)
            for partition, offset in sorted(fresh.searchable_offsets.items()):
                offsets.add_metric([name, str(partition)], offset)
        yield from (lag, rows, version, offsets)


class Metrics:
    def __init__(self, searcher: Searcher) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "freshlake_search_latency_seconds",
            "POST /v1/search latency, by mode and outcome",
            ["mode", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.results = Histogram(
            "freshlake_search_results",
            "documents (or chunks) returned per search",
            ["mode"],
            buckets=RESULT_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "freshlake_http_requests",
            "HTTP requests by route and status code",
            ["route", "code"],
            registry=self.registry,
        )
        self.waits = Histogram(
            "freshlake_read_your_writes_wait_seconds",
            "time a search waited for its `after` positions",
            ["satisfied"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StreamCollector(searcher))
