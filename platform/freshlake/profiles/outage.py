"""A TCP front that can make a service unreachable on demand, as its own process.

Run in the test process, its proxy threads shared the GIL with delta-rs callers and the
producer, and lake requests timed out with no outage at all; here it is an asyncio loop in a
child (like the SASL gateway), driven by lines on stdin: `cut` refuses new connections and
resets open ones, `restore` listens again on the same port; each is answered `ok <command>`.
Run: `python -m freshlake.profiles.outage --listen HOST:PORT --target HOST:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import struct
import sys

from freshlake.profiles.proxying import address, pipe

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST, as a dead host's firewall would


class Front:
    def __init__(self, *, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen, self.target = listen, target
        self.server: asyncio.base_events.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, TimeoutError):
            writer.close()
            return
        pair = {writer, up_writer}
        self.open |= pair
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.open -= pair

    async def restore(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self.handle, *self.listen, reuse_address=True)

    async def cut(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for writer in list(self.open):
            with contextlib.suppress(Exception):
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            writer.transport.abort()
        self.open.clear()


async def serve(*, listen: tuple[str, int], target: tuple[str, int]) -> None:
    front = Front(listen=listen, target=target)
    await front.restore()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    print(f"front ready on {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)

    async def control() -> None:
        while line := (await commands.readline()).decode().strip():
            if line == "cut":
                await front.cut()
            elif line == "restore":
                await front.restore()
            else:
                print(f"unknown command {line!r}", flush=True)
                continue
            print(f"ok {line}", flush=True)
        stop.set()  # stdin closed: the parent is gone or done

    task = asyncio.create_task(control())
    await stop.wait()
    task.cancel()
    await front.cut()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--target", type=address, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(listen=args.listen, target=args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
