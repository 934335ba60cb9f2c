"""Configuration: the ``servers.yaml`` schema, its loader and interpolation, process settings.

The lowest layer: imports nothing else of the gateway but ``errors`` and the pure policies.
"""
