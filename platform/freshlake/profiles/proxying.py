"""What the profile's two loopback proxies (the SASL_SSL gateway, the object-store outage front)
share: copying one direction of a TCP stream, and `host:port` arguments."""

from __future__ import annotations

import asyncio
import contextlib


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until EOF or a broken connection, then close `writer`."""
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def address(text: str) -> tuple[str, int]:
    """`host:port` -> (host, port), for argparse."""
    host, _, port = text.rpartition(":")
    return host, int(port)
