"""The secrets of a users file, for nodes with users (``users_file=`` or ``users=``)::

    >>> import wire.auth
    >>> wire.auth.hash_password("s3cret").startswith("$argon2id$")
    True
    >>> token = wire.auth.new_token()
    >>> len(wire.auth.token_sha256(token))
    64

A users file (TOML) lists each user with a ``password_hash`` or a ``token_sha256`` (or
both) and its permissions: ``read``, ``write``, ``pipelines``, ``join``, ``remove``,
``status`` or ``all``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from . import _native

__all__ = ["hash_password", "new_token", "token_sha256"]


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (a PHC string) for ``password_hash``."""
    return _native.hash_password(password)


def new_token() -> str:
    """A new random bearer token (256 bits, URL-safe)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")


def token_sha256(token: str) -> str:
    """The hex SHA-256 of ``token``, for ``token_sha256``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
