"""The retrieval service in-process (ASGI): answers, freshness, auth, metrics, and no 500 on any
input, fuzzed by schemathesis against the app's own OpenAPI schema."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from freshlake.embed.models import HashEmbedder
from freshlake.serve.app import create_app
from tests.demo_streams import EXAMPLE_FILE, demo_stream
from tests.retrieval_tables import chunk, demo_tables, write

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTION = "my flight to New York was cancelled, can I get a refund"


@pytest.fixture
def lance(tmp_path) -> str:
    uri = str(tmp_path / "lance")
    demo_tables(uri, HashEmbedder())
    return uri


def make_app(tmp_path, lance: str, **options):
    return create_app(
        streams=EXAMPLE_FILE,
        delta_root=str(tmp_path / "delta"),
        lance_root=lance,
        embedder=HashEmbedder(),
        token=TOKEN,
        **options,
    )


@pytest.fixture
def client(tmp_path, lance):
    with TestClient(make_app(tmp_path, lance)) as c:
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        yield c


def test_search_answers_documents_with_passages_provenance_and_age(client) -> None:
    response = client.post("/v1/search", json={"query": QUESTION, "k": 5}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    docs = body["documents"]
    assert len(docs) == 5 and len({(d["stream"], d["key"]) for d in docs}) == 5
    assert {("policies", "refunds"), ("flights", "UA1")} <= {(d["stream"], d["key"]) for d in docs}
    for d in docs:
        assert d["passages"] and d["passages"][0]["text"] == d["text"]
        assert d["provenance"]["source_topic"] == d["stream"] and d["provenance"]["model_name"]
        assert d["age_seconds"] > 0 and d["as_of"].startswith("as of")
    flights = body["freshness"]["flights"]
    assert flights["rows"] == 4 and flights["lance_version"] >= 1 and flights["table"].startswith("flights__")
    assert 25 < flights["event_time_lag_s"] < 300 and flights["newest_event_time"]
    assert body["freshness"]["bookings"]["table"] is None  # declared, not embedded yet
    assert body["chunks"] is None and body["stale_streams"] == [] and body["read_your_writes"] is None

    chunks = client.post(
        "/v1/search",
        json={"query": "flight", "chunks": True, "k": 2, "streams": ["flights"], "mode": "fts"},
        headers=AUTH,
    ).json()
    assert chunks["documents"] is None and len(chunks["chunks"]) == 2


def test_staleness_is_reported_or_refused_with_503(client) -> None:
    report = client.post("/v1/search", json={"query": QUESTION, "max_staleness_s": 600}, headers=AUTH).json()
    assert report["stale_streams"] == ["bookings", "policies"] and report["documents"]
    assert (
        report["freshness"]["policies"]["stale"] is True and report["freshness"]["flights"]["stale"] is False
    )
    refused = client.post(
        "/v1/search",
        json={"query": QUESTION, "max_staleness_s": 600, "staleness": "fail", "streams": ["policies"]},
        headers=AUTH,
    )
    assert refused.status_code == 503
    body = refused.json()
    assert body["stale_streams"] == ["policies"] and "event-time lag" in body["detail"]
    assert body["freshness"]["policies"]["event_time_lag_s"] > 7000


def test_new_table_versions_are_served_without_a_restart(client, lance) -> None:
    ask = {"query": "volcanic ash", "mode": "fts", "streams": ["flights"]}
    assert client.post("/v1/search", json=ask, headers=AUTH).json()["documents"] == []
    write(
        lance,
        demo_stream("flights"),
        [chunk("flights", "BA9", "Flight BA9 diverted by volcanic ash.", 9, timedelta(0))],
        HashEmbedder(),
    )
    assert [d["key"] for d in client.post("/v1/search", json=ask, headers=AUTH).json()["documents"]] == [
        "BA9"
    ]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"query": "refund", ', 422, "JSON decode error"),
        (b"not json at all", 422, "JSON decode error"),
        ({"query": ""}, 422, "at least 1 character"),
        ({"query": "   "}, 422, "should match pattern"),
        ({"query": "refund", "streams": ["nope"]}, 422, "'flights', 'bookings' or 'policies'"),
        ({"query": "refund", "where": "status = "}, 400, "cannot be evaluated"),
        ({"query": "refund", "where": "nope = 1", "streams": ["flights"]}, 400, "nope"),
        ({"query": "refund", "k": 10**9}, 422, "less than or equal to 1000"),
        ({"query": "refund", "k": 0}, 422, "greater than or equal to 1"),
        ({"query": "refund", "k": "ten"}, 422, "valid integer"),
        ({"query": 42}, 422, "valid string"),
        ({"query": "refund", "mode": "semantic"}, 422, "'vector', 'fts' or 'hybrid'"),
        ({"query": "refund", "top_k": 3}, 422, "Extra inputs"),
        ({"query": "refund", "after": {"flights": {"x": 1}}}, 422, "pattern"),
        ({"query": "refund", "after": {"flights": {"0": -1}}}, 422, "greater than or equal to 0"),
        ({"query": "refund", "timeout_s": 3600}, 422, "less than or equal to 60"),
        ({"query": "refund", "max_staleness_s": -1}, 422, "greater than or equal to 0"),
        ([1, 2], 422, "valid dictionary"),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(client, body, status: int, message: str) -> None:
    if isinstance(body, bytes):
        response = client.post(
            "/v1/search", content=body, headers={**AUTH, "content-type": "application/json"}
        )
    else:
        response = client.post("/v1/search", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert message in response.text


def test_bearer_token_guards_the_api_not_the_probes(client) -> None:
    ask = {"query": "refund"}
    assert client.post("/v1/search", json=ask).status_code == 401
    wrong = client.post("/v1/search", json=ask, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert "FRESHLAKE_SERVE_TOKEN" in wrong.json()["detail"]
    assert client.get("/v1/streams").status_code == 401 and client.get("/metrics").status_code == 401
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").json()["status"] == "ready"
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_open_without_a_token(tmp_path, lance, monkeypatch) -> None:
    monkeypatch.delenv("FRESHLAKE_SERVE_TOKEN", raising=False)
    app = create_app(
        streams=EXAMPLE_FILE, delta_root=str(tmp_path / "d"), lance_root=lance, embedder=HashEmbedder()
    )
    with TestClient(app) as c:
        assert c.post("/v1/search", json={"query": "refund"}).status_code == 200


def test_streams_and_metrics(client) -> None:
    client.post("/v1/search", json={"query": QUESTION, "k": 3}, headers=AUTH)
    client.post("/v1/search", json={"query": "x", "where": "nope = 1"}, headers=AUTH)
    streams = client.get("/v1/streams", headers=AUTH).json()["streams"]
    assert [s["stream"] for s in streams] == ["flights", "bookings", "policies"]
    assert streams[0]["rows"] == 4 and streams[0]["watermarks"] is None  # no Kafka configured
    text = client.get("/metrics", headers=AUTH).text
    assert 'freshlake_search_latency_seconds_count{mode="hybrid",outcome="ok"} 1.0' in text
    assert 'freshlake_search_latency_seconds_count{mode="hybrid",outcome="bad_request"} 1.0' in text
    assert 'freshlake_search_results_bucket{le="5.0",mode="hybrid"} 1.0' in text
    assert 'freshlake_stream_rows{stream="flights"} 4.0' in text
    lag = next(
        line
        for line in text.splitlines()
        if line.startswith('freshlake_stream_event_time_lag_seconds{stream="flights"}')
    )
    assert 25 < float(lag.split()[-1]) < 300
    assert 'freshlake_http_requests_total{code="400",route="/v1/search"} 1.0' in text


def test_schemathesis_finds_no_500_and_no_schema_violation(tmp_path, lance) -> None:
    """Positive and negative cases for every operation, bounded (~100 per operation and mode)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    @schemathesis.check
    def no_server_error(ctx, response, case) -> None:
        # 503 is an answer here (staleness="fail" on data older than max_staleness_s), not a fault
        if response.status_code >= 500 and response.status_code != 503:
            raise AssertionError(f"{response.status_code}: {response.text[:500]}")

    app = make_app(tmp_path, lance, max_timeout_s=0.2, warm=False)  # `after` waits stay short
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [
        no_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/search", "/v1/streams", "/metrics", "/readyz"}
    started = time.monotonic()
    seen: dict[int, int] = {}
    for operation in operations:
        has_input = operation.path == "/v1/search"  # the GET routes take no input to negate
        for mode in (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,)
        ):
            examples = 250 if has_input else 10

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                response = case.call_and_validate(headers=AUTH, checks=checks)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1

            run()
    assert time.monotonic() - started < 90
    print("schemathesis status codes:", dict(sorted(seen.items())))
    assert 500 not in seen and {200, 400, 422} <= set(seen), seen
