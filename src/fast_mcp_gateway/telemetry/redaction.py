"""Masking secrets in what the gateway shows, stores and logs.

A leaf: imports nothing of the gateway, so config, upstream, store and admin can all use it.
A *secret* is a value that came from ``${VAR}`` interpolation (the config remembers them) or a
value under a credential-like key (``token``, ``Authorization``, ``api_key``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Collection

MASK = "***"
# Shorter values would mask common substrings ("1", "on") all over the text.
MIN_SECRET_LENGTH = 4
CREDENTIAL_KEY = re.compile(r"(?i)(token|secret|passw|api[-_]?key|auth|credential|cookie|session)")


def redact_value(key: str, value: str, secrets: Collection[str]) -> str:
    """Mask a value whose key looks like a credential, or that holds an interpolated secret."""
    if CREDENTIAL_KEY.search(key) and value:
        return MASK
    return mask_secrets(value, secrets)


def mask_secrets(text: str, secrets: Collection[str]) -> str:
    """Replace every occurrence of a known secret value inside ``text`` (longest first, so
    a secret containing another is masked whole)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    return text
