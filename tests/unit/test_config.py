"""The streams loader: the example loads as the specs it replaced; every mistake names the file,
the stream and the field, and says what to write instead."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from freshlake.config import load_streams, streams_path
from freshlake.errors import FreshlakeConfigError
from tests.demo_streams import EXAMPLE_FILE

GOOD = """
streams:
  - name: orders
    topic: shop.orders
    key_field: order_id
    format: debezium
    fields: {order_id: int, customer: string, total: float, updated_at: timestamp}
    required: [order_id]
    event_time_field: updated_at
    document:
      template: "Order {order_id} of {customer}[ for {total}][, customer {cust.name}]"
      enrich: {stream: customers, on: customer, prefix: cust}
  - name: customers
    topic: shop.customers
    key_field: [region, customer_id]
    order_by: revision
    fields: {region: string, customer_id: int, name: string, revision: int}
"""


def write(tmp_path: Path, text: str, name: str = "streams.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(FreshlakeConfigError) as caught:
        load_streams(path)
    return str(caught.value)


def test_the_example_loads_with_its_orders_and_feedback_targets() -> None:
    config = load_streams(EXAMPLE_FILE)
    assert [s.name for s in config.streams] == ["flights", "bookings", "policies", "feedback"]
    flights, bookings, policies, feedback = config.streams
    assert flights.order_fields == ("version",)
    assert bookings.format == "debezium" and bookings.order_fields == ()  # the source position
    assert policies.order_fields == ("revision",)
    assert feedback.order_fields == ("event_time",)  # the event-time default
    assert feedback.feedback is not None and feedback.feedback.documents == (
        "flights",
        "bookings",
        "policies",
    )
    assert bookings.document is not None and bookings.document.enrich is not None
    assert bookings.document.enrich.on == "flight_id"  # YAML 1.2 booleans: `on:` stays a key
    assert flights.document is not None
    assert flights.document.template.startswith("Flight {flight_number} ({airline}) from [{origin_city} ]")
    assert "[ because of {reason}]" in flights.document.template
    assert "\n" not in flights.document.template
    assert policies.document is not None and policies.document.template == "{title}\n\n{body}"


def test_a_config_of_other_streams_loads_with_composite_keys_and_enrichment(tmp_path: Path) -> None:
    orders, customers = load_streams(write(tmp_path, GOOD)).streams
    assert orders.key_fields == ("order_id",) and orders.fields["order_id"] == "int"
    assert customers.key_fields == ("region", "customer_id")
    assert customers.order_fields == ("revision",)


def test_the_path_comes_from_the_argument_then_the_environment_then_the_default(tmp_path: Path) -> None:
    env = {"FRESHLAKE_STREAMS": str(tmp_path / "env.yaml")}
    assert streams_path("a.yaml", env=env) == Path("a.yaml").resolve()
    assert streams_path(None, env=env) == tmp_path / "env.yaml"
    assert streams_path(None, env={}, default=tmp_path / "d.yaml") == tmp_path / "d.yaml"
    assert streams_path(None, env={}) == Path("streams.yaml").resolve()


def test_a_folder_of_files_is_one_config_and_duplicates_across_files_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "streams"
    folder.mkdir()
    write(folder, GOOD, "a.yaml")
    assert len(load_streams(folder).streams) == 2
    write(
        folder,
        "streams:\n  - {name: orders, topic: shop.orders, key_field: id,"
        " fields: {id: int, t: timestamp}, event_time_field: t}\n",
        "b.yml",
    )
    text = problems_of(folder)
    assert f"{folder / 'b.yml'}, stream 'orders', field 'name': name 'orders' is already used" in text
    assert f"{folder / 'b.yml'}, stream 'orders', field 'topic': topic 'shop.orders' is already used" in text
    assert str(folder / "a.yaml") in text  # where the first one is


def test_a_missing_file_says_how_to_get_one(tmp_path: Path) -> None:
    text = problems_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in text and "FRESHLAKE_STREAMS" in text and "freshlake init" in text


def test_yaml_syntax_errors_and_duplicated_keys_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "streams:\n  - name: a\n    topic: [unclosed\n")
    assert f"{path}: line " in problems_of(path)
    path = write(tmp_path, "streams:\n  - name: a\n    topic: a\n    topic: b\n")
    assert f"{path}: line 4" in problems_of(path) and "'topic' is written twice" in problems_of(path)


# (replace in GOOD, the field the message names, words it must contain)
MISTAKES = [
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    colour: red\n",
        "orders",
        "colour",
        "unknown key",
    ),
    (
        "    required: [order_id]\n",
        "    requird: [order_id]\n",
        "orders",
        "requird",
        "did you mean 'required'",
    ),
    ("format: debezium", "format: avro", "orders", "format", "write `json` or `debezium`"),
    ("total: float,", "total: decimalish,", "orders", "fields.total", "use one of"),
    ("key_field: order_id", "key_field: id", "orders", "key_field", "is not among `fields`"),
    ("required: [order_id]", "required: [order_id, shipped]", "orders", "required", "'shipped' is not among"),
    (
        "event_time_field: updated_at",
        "event_time_field: customer",
        "orders",
        "event_time_field",
        "declared as string",
    ),
    ("order_by: revision", "order_by: name", "customers", "order_by", "needs int or float or timestamp"),
    ("order_by: revision", "order_by: rev", "customers", "order_by", "'rev' is not among `fields`"),
    ("    order_by: revision\n", "", "customers", "order_by", "needs an order for its events"),
    (
        "Order {order_id} of",
        "Order {order_no} of",
        "orders",
        "document.template",
        "{order_no} is not a field",
    ),
    (
        "customer {cust.name}",
        "customer {cust.nick}",
        "orders",
        "document.template",
        "'customers' has no field 'nick'",
    ),
    (
        "enrich: {stream: customers,",
        "enrich: {stream: custmers,",
        "orders",
        "document.enrich.stream",
        "unknown stream 'custmers'",
    ),
    ("on: customer,", "on: client,", "orders", "document.enrich.on", "'client' is not among"),
    (
        "- name: customers\n    topic: shop.customers",
        "- name: customers\n    topic: shop.orders",
        "customers",
        "topic",
        "already used by stream 'orders'",
    ),
    ("- name: customers", "- name: orders", "orders", "name", "already used by stream 'orders'"),
    ("- name: customers", "- name: Customers!", "Customers!", "name", "lower-case letters"),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    partitioning: {cadence: weekly}\n",
        "orders",
        "partitioning.cadence",
        "write `daily` or `hourly`",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    partitioning: {start: 2026-13-01}\n",
        "orders",
        "partitioning.start",
        "is not a daily partition start",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    partitioning: {cadence: hourly, start: '2026-01-01'}\n",
        "orders",
        "partitioning.start",
        "'2026-01-01-00:00'",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    freshness: {warn_after_seconds: 600, fail_after_seconds: 60}\n",
        "orders",
        "freshness.warn_after_seconds",
        "WARN must come first",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    freshness: {warn_after_seconds: soon}\n",
        "orders",
        "freshness.warn_after_seconds",
        "expected a whole number",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    partitions: 0\n",
        "orders",
        "partitions",
        "must be at least 1",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    batching: {max_records_per_run: many}\n",
        "orders",
        "batching.max_records_per_run",
        "expected a whole number",
    ),
    ("topic: shop.orders", "topic: [a, b]", "orders", "topic", "expected text"),
    ("customer: string,", "customer: string, op: string,", "orders", "fields.op", "rename the field"),
    (
        "name: string,",
        "name: string, is_deleted: bool,",
        "customers",
        "fields.is_deleted",
        "rename the field",
    ),
    (
        "Order {order_id} of",
        "Order {order_id} v{version} of",
        "orders",
        "document.template",
        "{version} would show",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    batching: {mode: sometimes}\n",
        "orders",
        "batching.mode",
        "write `streaming` or `per_batch`",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    feedback: {documents: [orders, nowhere]}\n",
        "orders",
        "feedback.documents",
        "'nowhere' is not a stream with a document",
    ),
    (
        "    required: [order_id]\n",
        "    required: [order_id]\n    feedback: {}\n",
        "orders",
        "feedback",
        "'document_ids' is not among",
    ),
]


@pytest.mark.parametrize(("old", "new", "stream", "field", "words"), MISTAKES)
def test_every_mistake_names_the_file_the_stream_and_the_field(
    tmp_path: Path, old: str, new: str, stream: str, field: str, words: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    text = problems_of(path)
    assert f"{path}, stream {stream!r}, field {field!r}: " in text, text
    assert words in text, text


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace("format: debezium", "format: avro").replace("order_by: revision", "order_by: rev"),
    )
    text = problems_of(path)
    assert text.startswith("the streams configuration has 2 problems:")


def test_a_file_without_streams_shows_the_shape_to_write(tmp_path: Path) -> None:
    path = write(tmp_path, "stream:\n  - name: a\n")
    text = problems_of(path)
    assert f"{path}: expected a top-level `streams:` list" in text and "key_field:" in text
