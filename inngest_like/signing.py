"""Request signing and key handling of the wire protocol (shared by SDK and executor).

    X-Inngest-Signature: t=<unix seconds>&s=<hex HMAC-SHA256(key, body + t)>

The HMAC key is the signing key without its `signkey-<env>-` prefix, as ASCII text (not
hex-decoded); the body is the JCS (RFC 8785) canonical JSON that was sent. Bearer tokens for
the executor's API are the hex SHA-256 of the hex-decoded key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import jcs
import orjson

_PREFIX = re.compile(r"^signkey-\w+-")
MAX_AGE_S = 5 * 60


class SignatureError(Exception):
    """A request's signature is missing, malformed, wrong or stale."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def strip_prefix(key: str) -> str:
    return _PREFIX.sub("", key.strip())


def canonical(body: bytes) -> bytes:
    """The JCS canonical form of a JSON body (empty stays empty)."""
    if not body.strip():
        return b""
    return bytes(jcs.canonicalize(orjson.loads(body)))


def sign(body: bytes, key: str, now_s: int | None = None) -> str:
    """The header value for `body` (already canonical) signed with `key`."""
    t = str(int(time.time()) if now_s is None else now_s)
    mac = hmac.new(strip_prefix(key).encode(), body + t.encode(), hashlib.sha256).hexdigest()
    return f"t={t}&s={mac}"


def verify(body: bytes, header: str | None, keys: list[str], now_s: int | None = None,
           max_age_s: int = MAX_AGE_S) -> None:
    """Accept `header` if it signs `body` (canonicalised here) with one of `keys` within
    `max_age_s`; raise SignatureError otherwise. Compares in constant time."""
    if not header:
        raise SignatureError("header_missing", "X-Inngest-Signature is missing")
    fields = dict(part.split("=", 1) for part in header.split("&") if "=" in part)
    t, signature = fields.get("t", ""), fields.get("s", "")
    if not t.isdigit() or not signature:
        raise SignatureError("sig_verification_failed", "X-Inngest-Signature is malformed")
    now = int(time.time()) if now_s is None else now_s
    if abs(now - int(t)) > max_age_s:
        raise SignatureError("sig_verification_failed", "the signature is too old")
    try:
        message = canonical(body) + t.encode()
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise SignatureError("sig_verification_failed", "the body is not JSON") from None
    for key in keys:
        expected = hmac.new(strip_prefix(key).encode(), message, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return
    raise SignatureError("sig_verification_failed", "the signature does not match")


def bearer(key: str) -> str:
    """The Bearer token for `key`: hex SHA-256 of the hex-decoded key."""
    return hashlib.sha256(bytes.fromhex(strip_prefix(key))).hexdigest()


def bearer_matches(token: str, keys: list[str]) -> bool:
    """Does an `Authorization: Bearer` token name one of `keys`? Accepts the hash or the
    plain key, with or without the `signkey-*-` prefix (JS keeps it, Python drops it)."""
    token = strip_prefix(token)
    ok = False
    for key in keys:
        plain = strip_prefix(key)
        try:
            hashed = bearer(key)
        except ValueError:
            hashed = ""
        # evaluate both comparisons for every key: no early exit on a match
        ok |= hmac.compare_digest(token, hashed) | hmac.compare_digest(token, plain)
    return ok
