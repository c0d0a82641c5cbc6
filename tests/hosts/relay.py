"""A TCP relay: `python3 relay.py LISTEN_HOST:PORT TARGET_HOST:PORT` forwards every connection.

Test hosts reach the machine's Kafka through two of them: the broker advertises a loopback address, so each
host relays its own loopback port to the test network's gateway, where the test relays it to the broker."""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int], ready: asyncio.Event | None = None) -> None:
    """Accept on `listen` and pipe each connection to `target` both ways, until cancelled."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    asyncio.run(serve(_address(sys.argv[1]), _address(sys.argv[2])))
