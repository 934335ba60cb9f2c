"""Configuration: the ``servers.yaml`` schema (``schema``), its loader (``loader``, with
``document`` reading the file's YAML or JSON, ``interpolation`` and the cross-field
``checks``), and process settings (``settings``).

The lowest layer: imports nothing else of the gateway but ``errors``, the pure policies and
the ``telemetry.redaction`` leaf.
"""
