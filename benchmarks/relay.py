"""A byte-for-byte relay: the floor for *any* gateway, stdio or HTTP.

Run as ``python benchmarks/relay.py COMMAND [ARGS...]``: spawns the command and
copies this process's stdin to its stdin and its stdout to this process's stdout,
without parsing anything.  The benchmark puts it where the gateway would be, so
the cost of the extra process and pipe hop is measured on its own: whatever the
gateway costs beyond this relay is MCP processing (parse, dispatch, re-encode).

``python benchmarks/relay.py --tcp PORT UPSTREAM_PORT``: the same over TCP on
127.0.0.1 (the HTTP phase's floor): each connection to ``PORT`` gets its own
connection to ``UPSTREAM_PORT``, bytes copied both ways, nothing parsed (so the
upstream sees the host's own requests, ``Host`` header included).
"""

from __future__ import annotations

import asyncio
import socket
import sys


async def _pump(read: asyncio.StreamReader, write: asyncio.StreamWriter) -> None:
    while data := await read.read(65536):
        write.write(data)
        await write.drain()
    write.close()


async def relay(argv: list[str]) -> int:
    """Relay stdio to ``argv`` until our stdin closes; return the child's exit code."""
    loop = asyncio.get_running_loop()
    child = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    stdout = asyncio.StreamWriter(transport, protocol, None, loop)
    await asyncio.gather(_pump(stdin, child.stdin), _pump(child.stdout, stdout))
    return await child.wait()


async def tcp_relay(port: int, upstream_port: int) -> None:
    """Relay every connection to 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        for w in (writer, up_writer):  # as any HTTP stack: no Nagle delay on small writes
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except OSError:
            pass  # one side went away: the other is closed below
        finally:
            writer.close()
            up_writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--tcp"]:
        asyncio.run(tcp_relay(int(sys.argv[2]), int(sys.argv[3])))
    else:
        sys.exit(asyncio.run(relay(sys.argv[1:])))
