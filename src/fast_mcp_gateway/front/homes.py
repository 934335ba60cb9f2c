"""Where the URIs hosts hold are subscribed upstream (``FrontHub``'s homes), indexed by
what an upstream's update names.

An upstream's ``notifications/resources/updated`` names its server and its own URI; the
hub looked at every home held (every URI, every server) to find the exposed URIs
subscribed there, at each update.  ``Homes`` keeps them by server and upstream URI too:
an update costs a lookup and its holders (``holding``), a removed server its own homes
(``drop_server``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple


class Home(NamedTuple):
    """Where an exposed URI hosts hold is subscribed upstream: its server, by name, and
    the server's own URI."""

    server: str
    original: str


class Homes(Mapping[tuple[str, str], Home]):
    """Each held URI's home per server: ``(exposed URI, server) -> Home`` (its key's
    server is the home's), and the exposed URIs each server's upstream URI is
    subscribed as."""

    def __init__(self) -> None:
        self._homes: dict[tuple[str, str], Home] = {}
        self._exposed: dict[str, dict[str, set[str]]] = {}  # server -> original -> URIs

    def __getitem__(self, key: tuple[str, str]) -> Home:
        return self._homes[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._homes)

    def __len__(self) -> int:
        return len(self._homes)

    def place(self, uri: str, home: Home) -> Home | None:
        """``uri``'s home at ``home.server`` is ``home`` from now on; the one it had
        there before (None: none)."""
        before = self.pop(uri, home.server)
        self._homes[(uri, home.server)] = home
        self._exposed.setdefault(home.server, {}).setdefault(home.original, set()).add(uri)
        return before

    def pop(self, uri: str, server: str) -> Home | None:
        """Forget ``uri``'s home at ``server``: the one it had (None: none)."""
        home = self._homes.pop((uri, server), None)
        if home is not None:
            originals = self._exposed[server]
            uris = originals[home.original]
            uris.discard(uri)
            if not uris:
                del originals[home.original]
                if not originals:
                    del self._exposed[server]
        return home

    def drop_server(self, server: str) -> None:
        """Forget every home at ``server``."""
        for uris in self._exposed.pop(server, {}).values():
            for uri in uris:
                del self._homes[(uri, server)]

    def holding(self, server: str, originals: Iterable[str]) -> set[str]:
        """The exposed URIs subscribed at ``server`` as any of ``originals`` (its own
        URIs)."""
        at = self._exposed.get(server, {})
        return {uri for original in originals for uri in at.get(original, ())}
