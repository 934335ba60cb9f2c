"""A TCP relay in front of an upstream, whose test decides when its connections end.

What stands between the gateway and an HTTP server (a proxy, a port-forward, the
server's own idle close as seen from the wire): each connection a client makes is
relayed to ``127.0.0.1:target``; a subclass says which request is answered by a close
instead (``cuts``: never forwarded, no byte of an answer) and which connection's
server close is kept from its client (``holds``: it ends when the test says, not when
the machine's load lets the close through).  Connections are known by their client's
port (the gateway's ``sockname``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Self


class TcpRelay:
    """Relays to ``target``; ``port`` is its own once ``serving``."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, 0
        self.accepted = 0  # connections taken
        self.clients: dict[int, asyncio.StreamWriter] = {}  # by the client's port

    def cuts(self, peer: int) -> bool:
        """Whether the request the client on port ``peer`` writes now is answered by
        the connection's close (by default none is)."""
        return False

    def holds(self, peer: int) -> bool:
        """Whether the server's close of ``peer``'s connection is kept from its client
        (by default none is)."""
        return False

    def kill(self, peer: int) -> None:
        """Close the connection of the client on port ``peer`` now (its server crashed
        under it)."""
        self.clients[peer].close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    peer: int, upward: bool) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if upward and self.cuts(peer):
                    self.clients[peer].close()
                    break
                writer.write(data)
                await writer.drain()
        if upward or not self.holds(peer):
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        peer = writer.get_extra_info("peername")[1]
        self.clients[peer] = writer
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:  # (nothing listens there: the client's connection ends)
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer, peer, True),
                             self._pipe(up_reader, writer, peer, False))
        writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Self]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()  # its connections end with the clients' and the target's
