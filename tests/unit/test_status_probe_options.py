"""`freshlake status` reads object stores with a short retry budget of its own, whatever the
writers' options say, so a down store costs the person about the status timeout, not ~40 s."""

from __future__ import annotations

from freshlake.profiles.objectstore import storage_options
from freshlake.status import probe_storage_options


def test_writers_ride_out_30s_and_the_probe_gives_up_within_its_timeout() -> None:
    writers = storage_options(endpoint="http://127.0.0.1:9000")
    assert writers["backoff_config.init_backoff"] == "3500ms"  # 10 waits >= 35 s
    probe = probe_storage_options(writers, timeout=5.0)
    assert probe is not None
    assert probe["retry_timeout"] == "4s"
    assert probe["backoff_config.init_backoff"] == "100ms" and probe["backoff_config.max_backoff"] == "1s"
    # Everything else (endpoint, credentials, conditional put) is the writers' own.
    assert {k: v for k, v in probe.items() if not k.startswith(("retry", "backoff"))} == {
        k: v for k, v in writers.items() if not k.startswith(("retry", "backoff"))
    }


def test_local_roots_get_no_options() -> None:
    assert probe_storage_options(None, timeout=5.0) is None
    assert probe_storage_options({}, timeout=5.0) == {}
