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
_KEY = re.compile(r"signkey-\w+-([0-9a-fA-F]*)")
_HEX = re.compile(r"[0-9a-fA-F]+")
MAX_AGE_S = 5 * 60
MIN_KEY_HEX_CHARS = 32  # 128 bits; Inngest's keys carry 64 hex characters


class SignatureError(Exception):
    """A request's signature is missing, malformed, wrong or stale."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def strip_prefix(key: str) -> str:
    return _PREFIX.sub("", key.strip())


def key_problem(key: str) -> str | None:
    """What is wrong with a signing key, for a start-up error (never quoting the key)."""
    match = _KEY.fullmatch(key.strip())
    if match is None:
        return "must look like signkey-<env>-<hex>, e.g. signkey-prod-<64 hex characters>"
    secret = match.group(1)
    if len(secret) < MIN_KEY_HEX_CHARS:
        return (f"has {len(secret)} hex characters after signkey-<env>-; at least "
                f"{MIN_KEY_HEX_CHARS} are needed")
    if len(secret) % 2:
        return "needs an even number of hex characters after signkey-<env>- (whole bytes)"
    return None


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
           max_age_s: int = MAX_AGE_S, *, canonicalise: bool = True) -> None:
    """Accept `header` if it signs `body` (canonicalised here, unless `canonicalise` is
    false: SDKs sign their answers' raw bytes) with one of `keys` within `max_age_s`; raise
    SignatureError otherwise. Compares in constant time."""
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
        message = (canonical(body) if canonicalise else body) + t.encode()
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise SignatureError("sig_verification_failed", "the body is not JSON") from None
    for key in keys:
        secret = strip_prefix(key)
        if not secret:
            continue  # an empty HMAC key is one anybody can sign with
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return
    raise SignatureError("sig_verification_failed", "the signature does not match")


def bearer(key: str) -> str:
    """The Bearer token for `key`: hex SHA-256 of the hex-decoded key."""
    return hashlib.sha256(bytes.fromhex(strip_prefix(key))).hexdigest()


def bearer_matches(token: str, keys: list[str]) -> bool:
    """Does an `Authorization: Bearer` token name one of `keys`? Accepts the hash or the
    plain key, with or without the `signkey-*-` prefix (JS keeps it, Python drops it).
    An empty or non-hex token never matches, whatever the keys are."""
    token = strip_prefix(token)
    if not _HEX.fullmatch(token):
        return False
    ok = False
    for key in keys:
        if not strip_prefix(key):
            continue
        candidates = [strip_prefix(key)]
        try:
            candidates.append(bearer(key))
        except ValueError:
            pass  # not hex: only the plain key can match
        # every comparison runs for every key: no early exit on a match
        for candidate in candidates:
            ok |= bool(candidate) and hmac.compare_digest(token, candidate)
    return ok
