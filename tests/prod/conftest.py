"""The production-shaped profile for tests/prod: one stack per package, its settings in the
environment only while tests/prod runs (restored after, so other tiers never see them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from freshlake.profiles.objectstore import ACCESS_KEY, REGION, SECRET_KEY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/prod/" in item.nodeid:
            item.add_marker(pytest.mark.prod)


@pytest.fixture(scope="package")
def prod_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from freshlake.profiles.prod import ProdStack

    stack = ProdStack(home=tmp_path_factory.mktemp("prod"))
    patch = pytest.MonkeyPatch()
    try:
        stack.start()
        for name, value in stack.env().items():
            patch.setenv(name, value)
        # Test bodies reused from tests/integration read tables with helpers that pass no
        # storage options (pl.read_delta(uri)); object_store falls back to AWS_* for those.
        # freshlake's own code passes FRESHLAKE_STORAGE_OPTIONS explicitly (test_faults.py
        # runs it with these variables removed).
        options = stack.storage_options()
        for name in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"):
            patch.setenv(name, options[name])
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_REGION", REGION)
        patch.setenv("AWS_CONDITIONAL_PUT", "etag")
        yield stack
    finally:
        patch.undo()
        stack.stop()


@pytest.fixture(scope="package")
def broker(prod_stack) -> object:
    """The durable broker, through its SASL_SSL listener (overrides the embedded one)."""
    return prod_stack.broker


@pytest.fixture
def kafka_config(prod_stack) -> dict[str, object]:
    """Full client settings (SASL_SSL + SCRAM + the profile's CA), as KAFKA_* would give them."""
    from freshlake.kafka.connection import client_config

    return client_config(env=prod_stack.kafka_env())
