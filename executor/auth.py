"""Production-mode access: signing keys for calls and the API, event keys for `/e/{key}`,
and dashboard sessions. Secrets are stored and compared as hashes, in constant time, and
never logged or returned."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import orjson
from redis.asyncio import Redis

from inngest_like import signing

from . import keys

SESSION_TTL_S = 12 * 3600
SESSION_COOKIE = "il_session"
LOGIN_FAILURES_ALLOWED = 5  # per client address and window, then 429 until it ends
LOGIN_WINDOW_S = 15 * 60


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Auth:
    def __init__(self, redis: Redis, *, production: bool, signing_keys: list[str],
                 dashboard_password: str | None = None) -> None:
        self.redis = redis
        self.production = production
        self.signing_keys = [k for k in signing_keys if k]
        for key in self.signing_keys:
            problem = signing.key_problem(key)
            if problem:  # a key that is not hex would make weak or empty Bearer tokens
                raise ValueError(f"signing key: {problem}")
        self.dashboard_password = dashboard_password

    # -- signing keys --------------------------------------------------------------------
    def sign(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        """The canonical body to send and its signature header (no header when unkeyed)."""
        if not self.signing_keys:
            return body, {}
        canonical = signing.canonical(body)
        return canonical, {"X-Inngest-Signature": signing.sign(canonical, self.signing_keys[0])}

    def bearer_ok(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        return signing.bearer_matches(authorization[7:].strip(), self.signing_keys)

    # -- event keys ----------------------------------------------------------------------
    async def event_key_ok(self, key: str) -> bool:
        if not self.production:
            return True
        return bool(await self.redis.hexists(keys.EVENT_KEYS, fingerprint(key)))

    async def add_event_key(self, key: str, name: str, now_ms: int) -> str:
        if len(key) < 16:
            raise ValueError("key: an event key needs at least 16 characters")
        print_hint = f"{key[:4]}…"
        record = {"name": name, "hint": print_hint, "created_at": now_ms}
        await self.redis.hset(keys.EVENT_KEYS, fingerprint(key), orjson.dumps(record))
        return fingerprint(key)

    async def revoke_event_key(self, fingerprint_prefix: str) -> int:
        stored: Any = await self.redis.hkeys(keys.EVENT_KEYS)
        found = [f for f in stored if f.decode().startswith(fingerprint_prefix)]
        if len(found) != 1:
            return len(found) and -len(found)
        await self.redis.hdel(keys.EVENT_KEYS, found[0])
        return 1

    async def event_keys(self) -> list[dict[str, Any]]:
        raw: Any = await self.redis.hgetall(keys.EVENT_KEYS)
        return [{"fingerprint": f.decode()[:16], **orjson.loads(v)} for f, v in raw.items()]

    # -- dashboard sessions --------------------------------------------------------------
    def password_ok(self, password: str) -> bool:
        if not self.dashboard_password:
            return False
        return hmac.compare_digest(password.encode(), self.dashboard_password.encode())

    async def new_session(self) -> str:
        token = secrets.token_urlsafe(32)
        await self.redis.set(keys.session(fingerprint(token)), 1, ex=SESSION_TTL_S)
        return token

    async def session_ok(self, token: str | None) -> bool:
        if not token:
            return False
        return bool(await self.redis.exists(keys.session(fingerprint(token))))

    async def end_session(self, token: str | None) -> None:
        if token:
            await self.redis.delete(keys.session(fingerprint(token)))

    async def csrf_token(self, binding: str) -> str:
        """A token for forms: an HMAC of what it is bound to (the browser's CSRF cookie and
        its session) under a secret shared by every process."""
        await self.redis.set(keys.SESSION_SECRET, secrets.token_hex(32), nx=True)
        secret: Any = await self.redis.get(keys.SESSION_SECRET) or b""
        return hmac.new(secret, binding.encode(), hashlib.sha256).hexdigest()

    async def csrf_ok(self, binding: str | None, submitted: str | None) -> bool:
        if not binding or not submitted:
            return False
        return hmac.compare_digest(await self.csrf_token(binding), submitted)

    # -- login throttle ------------------------------------------------------------------
    async def login_wait_s(self, client: str) -> int:
        """Seconds until `client` may try a password again (0: now)."""
        key = keys.login_failures(client)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        if int(count or 0) < LOGIN_FAILURES_ALLOWED:
            return 0
        return max(1, int(ttl))

    async def login_failed(self, client: str) -> None:
        key = keys.login_failures(client)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, LOGIN_WINDOW_S, nx=True)  # the window starts at the first miss
            await pipe.execute()

    async def login_succeeded(self, client: str) -> None:
        await self.redis.delete(keys.login_failures(client))
