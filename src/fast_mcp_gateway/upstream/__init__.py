"""One supervised session to one upstream replica: process, transport, session, accounting.

Imports ``config`` and ``policies`` only; it reaches hosts through the relay protocol
(``upstream.relay``), never by importing ``front``.
"""
