"""The production-shaped profile for tests/prod: one stack per package, its settings in the
environment only while tests/prod runs (restored after, so other tiers never see them)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshlake.profiles.objectstore import ACCESS_KEY, REGION, SECRET_KEY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/prod/" in item.nodeid:
            item.add_marker(pytest.mark.prod)


@pytest.fixture(scope="package")
def prod_stack() -> Iterator[object]:
    from freshlake.profiles.prod import ProdStack

    # Not under tmp_path_factory: as root, PostgreSQL runs as `freshlake_pg`, which must traverse
    # the folders above its data dir, and every pytest session (anyone's, on a shared machine)
    # resets /tmp/pytest-of-root to 0700 at its start, locking a running server out of its files.
    home = Path(tempfile.mkdtemp(prefix="freshlake-prod-"))
    home.chmod(0o711)
    stack = ProdStack(home=home)
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
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="package")
def broker(prod_stack) -> object:
    """The durable broker, through its SASL_SSL listener (overrides the embedded one)."""
    return prod_stack.broker


@pytest.fixture
def kafka_config(prod_stack) -> dict[str, object]:
    """Full client settings (SASL_SSL + SCRAM + the profile's CA), as KAFKA_* would give them."""
    from freshlake.kafka.connection import client_config

    return client_config(env=prod_stack.kafka_env())
