"""A marketplace hook endpoint for benchmark 1 that answers at once: ``204`` to every POST.

Run as its own process (``python -m bench.hook_server --fd N``) on a socket the runner
bound, so it shares no interpreter with the load driver. HTTP/1.1 with keep-alive, as the
product's hook client expects: connections stay open across requests.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

ANSWER = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if length:
                await reader.readexactly(length)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _main(fd: int) -> None:
    listener = socket.socket(fileno=fd)
    server = await asyncio.start_server(_serve_connection, sock=listener, backlog=512)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="a listening socket's file descriptor")
    asyncio.run(_main(parser.parse_args().fd))


if __name__ == "__main__":
    main()
