"""The demo world is deterministic, matches the stream specs and has every case downstream needs."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from examples.flight_assistant.world import DEBEZIUM_BAD_KINDS, JSON_BAD_KINDS, DemoMessage, DemoWorld
from freshlake.streams import StreamSpec
from tests.demo_streams import DEMO_STREAMS

START = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)
SPECS = {spec.topic: spec for spec in DEMO_STREAMS}


def take(n: int, **kwargs: object) -> list[DemoMessage]:
    world = DemoWorld(**{"seed": 42, "start": START, **kwargs})  # type: ignore[arg-type]
    return list(itertools.islice(world.messages(), n))


@pytest.fixture(scope="module")
def sample() -> list[DemoMessage]:
    return take(4000)


def is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.utcoffset() == timedelta(0)


CHECKS = {
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "timestamp": is_timestamp,
    "list": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def assert_matches(spec: StreamSpec, record: dict[str, object]) -> None:
    for name in spec.required:
        assert record.get(name) is not None, (spec.name, name, record)
    assert set(record) <= set(spec.fields), (spec.name, set(record) - set(spec.fields))
    for name, value in record.items():
        if value is not None:
            assert CHECKS[spec.fields[name]](value), (spec.name, name, value)


def envelope(value: bytes) -> tuple[dict[str, object], bool]:
    """The Debezium envelope and whether it came wrapped with a schema."""
    decoded = json.loads(value)
    if "payload" in decoded:
        assert decoded["schema"]["type"] == "struct"
        return decoded["payload"], True
    return decoded, False


def test_same_seed_and_start_give_identical_messages() -> None:
    assert take(2000) == take(2000)
    assert take(2000) != take(2000, seed=43)
    assert take(50) != take(50, start=START + timedelta(seconds=1))


def test_good_messages_match_the_stream_specs(sample: list[DemoMessage]) -> None:
    assert {m.topic for m in sample} == set(SPECS)
    for message in sample:
        assert message.bad_kind is None and message.headers == ()
        if message.value is None:
            continue
        spec = SPECS[message.topic]
        decoded = json.loads(message.value)
        if spec.format == "debezium":
            env, _ = envelope(message.value)
            assert json.loads(message.key) == {"booking_id": (env["after"] or env["before"])["booking_id"]}
            for row in (env["before"], env["after"]):
                if row is not None:
                    assert_matches(spec, row)
            assert message.timestamp_ms == env["source"]["ts_ms"]
        else:
            assert_matches(spec, decoded)
            assert message.key == decoded[spec.key_field].encode()
            event_time = datetime.fromisoformat(decoded[spec.event_time_field])
            assert message.timestamp_ms == int(event_time.timestamp() * 1000)


def test_event_times_move_forward(sample: list[DemoMessage]) -> None:
    times = [m.timestamp_ms for m in sample]
    assert times == sorted(times)
    assert times[0] >= int(START.timestamp() * 1000)


def test_policies_come_first_then_get_revised_and_removed(sample: list[DemoMessage]) -> None:
    policies = [m for m in sample if m.topic == "policies"]
    first = [json.loads(m.value) for m in policies[:8]]
    assert sample[:8] == policies[:8]
    assert [p["revision"] for p in first] == [1] * 8
    assert all(400 <= len(p["body"].split()) <= 1500 for p in first)
    assert any(
        "if your flight is cancelled you are entitled to a full refund" in p["body"].lower() for p in first
    )
    later = policies[8:]
    assert any(m.value is not None and json.loads(m.value)["revision"] == 2 for m in later)
    removed = [m.key for m in later if m.value is None]
    assert removed and all(k.startswith(b"policy-") for k in removed)


def test_flight_versions_increase_and_ny_flights_get_cancelled(sample: list[DemoMessage]) -> None:
    versions: dict[str, list[int]] = {}
    cancelled_to_ny = 0
    statuses = Counter()
    for m in sample:
        if m.topic == "flights":
            record = json.loads(m.value)
            versions.setdefault(record["flight_id"], []).append(record["version"])
            statuses[record["status"]] += 1
            if record["status"] == "cancelled" and record["destination"] in {"JFK", "LGA", "EWR"}:
                cancelled_to_ny += 1
                assert record["reason"]
    assert 40 <= len(versions)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    assert cancelled_to_ny >= 1
    assert {"scheduled", "delayed", "gate_change", "boarding", "departed", "arrived"} <= set(statuses)


def test_bookings_are_debezium_with_every_op_and_tombstones(sample: list[DemoMessage]) -> None:
    bookings = [m for m in sample if m.topic == "bookings"]
    flight_ids = {json.loads(m.value)["flight_id"] for m in sample if m.topic == "flights"}
    ops, wrapped = Counter(), Counter()
    for i, m in enumerate(bookings):
        if m.value is None:
            continue
        env, is_wrapped = envelope(m.value)
        ops[env["op"]] += 1
        wrapped[is_wrapped] += 1
        assert env["source"]["connector"] == "postgresql"
        assert env["source"]["snapshot"] == ("true" if env["op"] == "r" else "false")
        if env["op"] == "d":
            assert env["after"] is None and env["before"] is not None
            assert any(later.key == m.key and later.value is None for later in bookings[i + 1 :])
        else:
            assert env["after"]["flight_id"] in flight_ids
    assert set(ops) == {"r", "c", "u", "d"}
    assert wrapped[True] > 0.3 * len(bookings) and wrapped[False] > 0.3 * len(bookings)
    first = envelope(bookings[0].value)[0]
    assert first["op"] == "r"


def test_feedback_refers_to_policies_and_flights(sample: list[DemoMessage]) -> None:
    feedback = [json.loads(m.value) for m in sample if m.topic == "feedback"]
    assert {f["rating"] for f in feedback} == {"up", "down"}
    ids = [i for f in feedback for i in f["document_ids"]]
    assert any(i.startswith("policy-") for i in ids)
    assert any(not i.startswith("policy-") for i in ids)


def test_bad_ratio_gives_headed_bad_messages_of_every_kind() -> None:
    messages = take(4000, bad_ratio=0.05)
    kinds = Counter(m.bad_kind for m in messages if m.bad_kind)
    assert 0.035 <= sum(kinds.values()) / len(messages) <= 0.065
    assert set(kinds) == set(JSON_BAD_KINDS) | set(DEBEZIUM_BAD_KINDS)
    for m in messages:
        if m.bad_kind == "missing_key":
            assert m.key is None and m.value is not None
        elif m.bad_kind == "not_json":
            with pytest.raises(ValueError):
                json.loads(m.value)
    # bad messages are extra: without them the good sequence is the bad_ratio=0 one
    good = [m for m in messages if m.bad_kind is None]
    assert good == take(len(good))


def without_times(message: DemoMessage) -> object:
    if message.value is None or message.topic == "bookings":
        return message.key
    record = json.loads(message.value)
    record.pop("event_time")
    record["body"] = record.get("body", "").split("effective")[0]
    return record


def test_a_clock_changes_times_but_not_content() -> None:
    ticks = itertools.count()
    timed = take(300, clock=lambda: START + timedelta(days=30, seconds=next(ticks)))
    plain = take(300)
    assert [without_times(m) for m in timed] == [without_times(m) for m in plain]
    assert all(t.timestamp_ms > p.timestamp_ms for t, p in zip(timed, plain, strict=True))


def test_streams_can_be_selected_and_are_validated() -> None:
    only = take(200, streams=("flights", "feedback"))
    assert {m.topic for m in only} == {"flights", "feedback"}
    with pytest.raises(ValueError, match="unknown"):
        DemoWorld(seed=1, start=START, streams=("ships",))
    with pytest.raises(ValueError, match="between 0 and 1"):
        DemoWorld(seed=1, start=START, bad_ratio=2)
