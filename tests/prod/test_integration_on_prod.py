"""The integration tests of raw, processed, backfills and alerts, run unchanged against the
production-shaped profile: the SASL_SSL broker on durable storage, Delta and LanceDB on S3, and
(for the alert sensor) Dagster's Postgres storage. Only the fixtures differ from tests/integration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from freshlake.ingest.raw import RawTables
from freshlake.profiles.prod import LAKE_BUCKET
from tests.integration.test_alert_sensor import (
    receivers,  # noqa: F401  (fixture)
    test_failed_check_pages_once_and_resolves_once,  # noqa: F401
    test_freshness_warn_fail_pass_pages_once_and_resolves_once,  # noqa: F401
)
from tests.integration.test_backfills import (
    test_processed_backfill_restores_a_lost_current_row,  # noqa: F401
    test_raw_backfill_beside_streaming_ingestion_loses_and_duplicates_nothing,  # noqa: F401
    test_raw_backfill_restores_exactly_the_deleted_day,  # noqa: F401
)
from tests.integration.test_ingest_raw import (
    test_ten_thousand_messages_two_percent_bad,  # noqa: F401
    test_unknown_topic_is_a_config_error_and_creates_nothing,  # noqa: F401
)
from tests.integration.test_processed import (
    World,
    test_nothing_changed_embeds_nothing_and_one_change_embeds_one_document,  # noqa: F401
    test_superseded_deleted_and_withdrawn_text_is_gone,  # noqa: F401
)


class S3Root:
    """Stands where the integration tests put `tmp_path`: `root / "delta"` is an s3:// URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __truediv__(self, name: str) -> S3Root:
        return S3Root(f"{self.uri}/{name}")

    def __str__(self) -> str:
        return self.uri


@pytest.fixture
def lake_root(prod_stack) -> S3Root:
    return S3Root(f"s3://{LAKE_BUCKET}/it-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def world(kafka_config, lake_root) -> World:
    return World(kafka_config, lake_root)


@pytest.fixture
def tables(lake_root, prod_stack) -> RawTables:
    return RawTables(
        raw=str(lake_root / "raw"),
        quarantine=str(lake_root / "quarantine"),
        storage_options=prod_stack.storage_options(),
    )


@pytest.fixture
def unique_topic() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def instance(prod_stack, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A fresh Dagster instance per test on its own Postgres database (the prod dagster.yaml)."""
    from freshlake.profiles.prod import write_dagster_yaml

    url = prod_stack.postgres.create_database(f"t{uuid.uuid4().hex[:12]}")
    home = tmp_path / "dagster"
    write_dagster_yaml(dagster_home=home)
    pg = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    path = home / "dagster.yaml"
    path.write_text(
        path.read_text().replace("postgres_url:\n      env: FRESHLAKE_DAGSTER_PG_URL", f"postgres_url: {pg}")
    )
    with dg.DagsterInstance.from_config(str(home)) as created:
        assert type(created.event_log_storage).__name__ == "PostgresEventLogStorage"
        yield created
