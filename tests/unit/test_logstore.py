"""The embedded broker's file-backed S3 subset, spoken to by a real S3 client (boto3)."""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from freshlake.kafka.logstore import ObjectFolder, serve


@pytest.fixture
def store(tmp_path):
    (tmp_path / "b").mkdir()
    server = serve(root=tmp_path, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    yield client
    server.shutdown()
    server.server_close()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_put_get_head_and_ranges(store) -> None:
    put = store.put_object(Bucket="b", Key="t/p/0.batch", Body=b"0123456789")
    got = store.get_object(Bucket="b", Key="t/p/0.batch")
    assert got["Body"].read() == b"0123456789"
    assert got["ETag"] == put["ETag"]
    assert got["LastModified"] is not None
    assert store.head_object(Bucket="b", Key="t/p/0.batch")["ContentLength"] == 10
    assert store.get_object(Bucket="b", Key="t/p/0.batch", Range="bytes=2-4")["Body"].read() == b"234"
    assert store.get_object(Bucket="b", Key="t/p/0.batch", Range="bytes=7-")["Body"].read() == b"789"
    assert store.get_object(Bucket="b", Key="t/p/0.batch", Range="bytes=-2")["Body"].read() == b"89"
    with pytest.raises(ClientError) as missing:
        store.get_object(Bucket="b", Key="t/p/1.batch")
    assert _code(missing) == "NoSuchKey"


def test_conditional_puts_are_compare_and_swap(store) -> None:
    first = store.put_object(Bucket="b", Key="w.json", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        store.put_object(Bucket="b", Key="w.json", Body=b"2", IfNoneMatch="*")
    assert _code(exists) == "PreconditionFailed"
    second = store.put_object(Bucket="b", Key="w.json", Body=b"2", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as stale:  # a writer holding the old version loses
        store.put_object(Bucket="b", Key="w.json", Body=b"3", IfMatch=first["ETag"])
    assert _code(stale) == "PreconditionFailed"
    assert store.get_object(Bucket="b", Key="w.json")["Body"].read() == b"2"
    assert second["ETag"] != first["ETag"]


def test_list_with_prefix_delimiter_and_pages(store) -> None:
    keys = ["a", "a/b", "a/c/d", "a/c/e", "b/x", "ab"]
    for key in keys:
        store.put_object(Bucket="b", Key=key, Body=key.encode())
    listed = store.list_objects_v2(Bucket="b")
    assert [o["Key"] for o in listed["Contents"]] == sorted(keys)  # `a` and `a/b` both exist
    under = store.list_objects_v2(Bucket="b", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in under["Contents"]] == ["a/b"]
    assert [p["Prefix"] for p in under["CommonPrefixes"]] == ["a/c/"]
    seen, token = [], None
    while True:
        page = store.list_objects_v2(Bucket="b", MaxKeys=2, **({"ContinuationToken": token} if token else {}))
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(keys)
    store.delete_object(Bucket="b", Key="a/b")
    assert "a/b" not in [o["Key"] for o in store.list_objects_v2(Bucket="b")["Contents"]]


def test_keys_that_leave_the_folder_are_refused(store, tmp_path) -> None:
    with pytest.raises(ClientError):
        store.put_object(Bucket="b", Key="../escape", Body=b"x")
    assert not (tmp_path / "escape.obj").exists()


def test_objects_and_versions_survive_a_restart_and_half_writes_are_dropped(tmp_path) -> None:
    folder = ObjectFolder(tmp_path)
    tag = folder.put("b", "w.json", b"kept")
    (folder.tmp / "123-1-w.json.obj").write_bytes(b"never acknowledged")
    again = ObjectFolder(tmp_path)  # a new process on the same folder
    assert again.path("b", "w.json").read_bytes() == b"kept"
    assert again.info(again.path("b", "w.json"))[2] == tag  # a CAS started before still applies
    assert list(again.tmp.iterdir()) == []
