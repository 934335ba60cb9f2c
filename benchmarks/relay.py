"""A byte-for-byte stdio relay: the floor for *any* stdio -> stdio gateway.

Run as ``python benchmarks/relay.py COMMAND [ARGS...]``: spawns the command and
copies this process's stdin to its stdin and its stdout to this process's stdout,
without parsing anything.  The benchmark puts it where the gateway would be, so
the cost of the extra process and pipe hop is measured on its own: whatever the
gateway costs beyond this relay is MCP processing (parse, dispatch, re-encode).
"""

from __future__ import annotations

import asyncio
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


if __name__ == "__main__":
    sys.exit(asyncio.run(relay(sys.argv[1:])))
