"""`inngest-like dev` and `inngest-like start`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import os
import pathlib
import secrets
import sys
import urllib.parse

import uvicorn
from redis.asyncio import Redis

from inngest_like import signing

from . import durations, keys
from .api import create_app
from .auth import Auth
from .clock import system_ms
from .driver import CONNECT_TIMEOUT_S, MAX_RESPONSE_BYTES
from .embedded import RedisChild, has_redis_server
from .events import Limits
from .layout import LayoutError, check
from .redis_client import connect, is_cluster
from .request_guard import DEFAULT_MAX_BODY_BYTES, allowed_hosts
from .service import Executor, Settings

log = logging.getLogger("inngest_like.executor")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inngest-like", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("dev", "development server: embedded Redis by default, syncs -u apps"),
        ("start", "production mode: same engine, requires --redis-url"),
    ):
        cmd = sub.add_parser(name, help=summary)
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, default=8288)
        cmd.add_argument("-u", "--sdk-url", dest="urls", action="append", default=[],
                         help="an app's serve URL to sync (repeatable)")
        cmd.add_argument("--redis-url", default=None,
                         help="a Redis, or any node of a Redis Cluster (detected; "
                              "--redis-cluster to insist)")
        cmd.add_argument("--redis-cluster", action="store_true",
                         help="--redis-url is a Redis Cluster node (refuse otherwise)")
        cmd.add_argument("--queue-shards", type=int, default=None, metavar="N",
                         help="cut a new store into N shards (1-32), each a hash slot of "
                              "its own: on a Redis Cluster, a multiple of the masters' "
                              "count spreads the work over them (default: the store's "
                              "count; 1 for a new store). Fixed once the store exists")
        cmd.add_argument("--migrate", action="store_true",
                         help="rename a drained store of an earlier key layout at start")
        cmd.add_argument("--retry-interval", type=float, default=None,
                         help="flat retry backoff in seconds instead of Inngest's table")
        cmd.add_argument("--lease-seconds", type=float, default=20.0,
                         help="how long a dead worker's call stays leased before retry")
        cmd.add_argument("--retention", default="7d",
                         help="how long ended runs, events, removed functions' state and "
                              "apps left without functions are kept (a duration: 7d, 12h, "
                              "30m; default 7d)")
        cmd.add_argument("--call-timeout", type=float, default=600.0,
                         help="seconds a call to the app may take before it counts as a "
                              "failed attempt (retried with backoff; default 600)")
        cmd.add_argument("--ack-replicas", type=int, default=0, metavar="N",
                         help="acknowledge events only once N Redis replicas have them "
                              "(WAIT; 503 after --ack-timeout): survives a failover")
        cmd.add_argument("--ack-timeout", type=float, default=1.0, metavar="SECONDS",
                         help="how long --ack-replicas waits (default 1)")
        cmd.add_argument("--no-eager-calls", action="store_true",
                         help="start a new run's first call only once the run is stored "
                              "(default: an idle worker starts it meanwhile, plan-only, so "
                              "code before the first step may run for an event whose "
                              "storing then fails)")
        cmd.add_argument("--workers", type=int, default=64,
                         help="concurrent calls per process")
        cmd.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S,
                         help="seconds to connect to an app, apart from --call-timeout")
        cmd.add_argument("--max-response-bytes", type=int, default=MAX_RESPONSE_BYTES,
                         help="a larger answer from an app fails the run")
        cmd.add_argument("--poll-interval", type=float, default=5.0,
                         help="seconds between re-syncs of -u apps")
        cmd.add_argument("--data-dir", default=".inngest-like",
                         help="embedded redis-server data folder (dev without --redis-url)")
        cmd.add_argument("--max-event-bytes", type=int, default=None,
                         help="per event (default: 3 MiB in dev, 512 KiB in production)")
        cmd.add_argument("--max-events-per-request", type=int, default=5000)
        cmd.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                         help="larger request bodies are refused with 413")
        cmd.add_argument("--allowed-hosts", action="append", default=[],
                         help="Host names to accept besides localhost, 127.0.0.1, [::1] and "
                              "--host (comma-separated, repeatable; '*.example.com' "
                              "patterns; '*' accepts any). Production checks Host only when "
                              "given")
        cmd.add_argument("--trust-proxy", default=None, metavar="ADDRESSES",
                         help="believe X-Forwarded-For/-Proto from these proxy addresses "
                              "(comma-separated, or '*'): behind a TLS-terminating proxy the "
                              "session cookie is then Secure and logins are throttled per "
                              "client")
        cmd.add_argument("--no-worker", action="store_true", help="serve the API only")
        # secrets: a flag shows in `ps`, so each one can also come from an environment
        # variable or a file (flag > flag file > variable > variable's _FILE)
        cmd.add_argument("--signing-key", default=None,
                         help="signs calls, guards the API (or $INNGEST_SIGNING_KEY)")
        cmd.add_argument("--signing-key-file", default=None,
                         help="read the signing key from a file (or $INNGEST_SIGNING_KEY_FILE)")
        cmd.add_argument("--signing-key-fallback", default=None,
                         help="also accepted, for rotation ($INNGEST_SIGNING_KEY_FALLBACK)")
        cmd.add_argument("--signing-key-fallback-file", default=None,
                         help="read the fallback key from a file "
                              "($INNGEST_SIGNING_KEY_FALLBACK_FILE)")
        cmd.add_argument("--event-key", action="append", default=[],
                         help="an event key to accept in production (repeatable; more can be "
                              "added at run time with `inngest-like keys add`)")
        cmd.add_argument("--event-key-file", action="append", default=[],
                         help="a file of event keys, one per line (repeatable)")
        cmd.add_argument("--dashboard-password", default=None,
                         help="dashboard login in production ($INNGEST_LIKE_DASHBOARD_PASSWORD)")
        cmd.add_argument("--dashboard-password-file", default=None,
                         help="read the dashboard password from a file "
                              "($INNGEST_LIKE_DASHBOARD_PASSWORD_FILE)")
        cmd.add_argument("--stall-threshold", type=float, default=300.0,
                         help="seconds without progress before a running run is flagged "
                              "stalled (functions may set their own; default 300)")
        cmd.add_argument("--metrics-token", default=None,
                         help="a bearer token that may read /metrics in production "
                              "($INNGEST_LIKE_METRICS_TOKEN)")
        cmd.add_argument("--no-metrics", action="store_true", help="no /metrics")
        cmd.add_argument("--log-level", default="info")
    keys_cmd = sub.add_parser("keys", help="manage production event keys (no restart needed)")
    keys_cmd.add_argument("action", choices=["add", "revoke", "list"])
    keys_cmd.add_argument("fingerprint", nargs="?", help="for revoke: the key's fingerprint")
    keys_cmd.add_argument("--redis-url", required=True)
    keys_cmd.add_argument("--name", default="")
    keys_cmd.add_argument("--key", default=None, help="for add: the key (default: a new one)")
    return parser


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _banner(args: argparse.Namespace, storage: str) -> None:
    print(f"inngest-like {args.command}: http://{args.host}:{args.port}", flush=True)
    print(f"  storage: {storage}", flush=True)
    for url in args.urls:
        print(f"  syncing app: {url}", flush=True)


class ConfigProblem(Exception):
    """A start-up setting is wrong: printed, and the process exits with status 2."""


def _read_secret(path: str, what: str) -> str:
    try:
        text = pathlib.Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigProblem(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigProblem(f"{what}: {path} is empty")
    return text


def _secret(value: str | None, path: str | None, env: str, flag: str) -> str | None:
    """A secret from its flag, its file flag, `$env` or the file named by `$env_FILE`."""
    if value:
        return value
    if path:
        return _read_secret(path, f"{flag}-file")
    if os.environ.get(env):
        return os.environ[env]
    if os.environ.get(f"{env}_FILE"):
        return _read_secret(os.environ[f"{env}_FILE"], f"${env}_FILE")
    return None


def _event_keys(args: argparse.Namespace) -> list[str]:
    found = list(args.event_key)
    for path in args.event_key_file:
        found += [line.strip() for line in _read_secret(path, "--event-key-file").splitlines()
                  if line.strip()]
    return found


def _signing_keys(args: argparse.Namespace) -> tuple[str | None, str | None]:
    key = _secret(args.signing_key, args.signing_key_file, "INNGEST_SIGNING_KEY",
                  "--signing-key")
    fallback = _secret(args.signing_key_fallback, args.signing_key_fallback_file,
                       "INNGEST_SIGNING_KEY_FALLBACK", "--signing-key-fallback")
    for flag, value in (("--signing-key", key), ("--signing-key-fallback", fallback)):
        problem = signing.key_problem(value) if value else None
        if problem:
            raise ConfigProblem(f"{flag}: the signing key {problem}")
    return key, fallback


def _retention_ms(text: str) -> int:
    try:
        ms = durations.parse_ms(text)
    except ValueError as exc:
        raise SystemExit(f"--retention: {exc}") from None
    if ms < 60_000:
        raise SystemExit("--retention: at least 1m (ended runs must outlive their readers)")
    return ms


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "keys":
        asyncio.run(_keys(args))
        return
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per periodic re-sync
    if args.command == "start" and not args.redis_url:
        print("inngest-like start: --redis-url is required in production mode", file=sys.stderr)
        raise SystemExit(2)
    try:
        signing_key, signing_key_fallback = _signing_keys(args)
        dashboard_password = _secret(args.dashboard_password, args.dashboard_password_file,
                                     "INNGEST_LIKE_DASHBOARD_PASSWORD", "--dashboard-password")
        event_keys = _event_keys(args)
    except ConfigProblem as exc:
        print(f"inngest-like {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command == "start" and not signing_key:
        print("inngest-like start: --signing-key (or INNGEST_SIGNING_KEY, or a key file) is "
              "required in production mode", file=sys.stderr)
        raise SystemExit(2)
    child: RedisChild | None = None
    redis: Redis
    migrate, cluster = bool(args.migrate), False
    if args.redis_url:
        cluster = is_cluster(args.redis_url)
        if args.redis_cluster and not cluster:
            print(f"inngest-like {args.command}: --redis-cluster: "
                  f"{_without_password(args.redis_url)} is not a Redis Cluster node",
                  file=sys.stderr)
            raise SystemExit(2)
        redis = connect(args.redis_url, cluster=cluster)
        kind = "Redis Cluster" if cluster else "redis"
        storage = f"{kind} at {_without_password(args.redis_url)}"
    elif has_redis_server():
        child = RedisChild(pathlib.Path(args.data_dir) / "redis")
        child.start()
        redis = connect(child.url)
        storage = f"embedded redis-server (AOF) in {child.data_dir}/, state survives restarts"
        migrate = True  # its own private store: nobody else can be using the old layout
    else:
        import fakeredis

        redis = fakeredis.FakeAsyncRedis()
        storage = ("in-memory Redis (no redis-server on PATH): state will NOT survive a "
                   "restart; install redis-server or pass --redis-url for durability")
    settings = Settings(
        mode="dev" if args.command == "dev" else "cloud",
        app_urls=args.urls,
        retry_interval_s=args.retry_interval,
        lease_ms=int(args.lease_seconds * 1000),
        retention_ms=_retention_ms(args.retention),
        call_timeout_s=args.call_timeout,
        slots=args.workers,
        poll_interval_s=args.poll_interval,
        limits=dataclasses.replace(Limits.for_mode(args.command != "dev", args.max_event_bytes),
                                   max_events=args.max_events_per_request),
        allowed_hosts=allowed_hosts(args.command == "start", args.host, args.allowed_hosts),
        max_request_bytes=args.max_request_bytes,
        trust_proxy=bool(args.trust_proxy),
        connect_timeout_s=args.connect_timeout,
        max_response_bytes=args.max_response_bytes,
        run_worker=not args.no_worker,
        eager_calls=not args.no_eager_calls,
        signing_key=signing_key,
        signing_key_fallback=signing_key_fallback,
        dashboard_password=dashboard_password,
        stall_threshold_ms=int(args.stall_threshold * 1000),
        metrics=not args.no_metrics,
        ack_replicas=max(0, args.ack_replicas),
        migrate=migrate,
        queue_shards=args.queue_shards,
        ack_timeout_ms=max(1, int(args.ack_timeout * 1000)),
        metrics_token=args.metrics_token or os.environ.get("INNGEST_LIKE_METRICS_TOKEN"),
    )
    url = args.redis_url or (child.url if child else None)
    if url:
        try:  # before serving: a store it cannot use ends the command with the reason
            asyncio.run(_check_layout(url, cluster=cluster, migrate=migrate,
                                      shards=args.queue_shards))
        except LayoutError as exc:
            print(f"inngest-like {args.command}: {exc}", file=sys.stderr)
            if child:
                child.stop()
            raise SystemExit(2) from None
    if url:
        storage += f"; {keys.shard_count()} shard{'s' if keys.shard_count() > 1 else ''}"
    executor = Executor(redis, settings)
    for key in event_keys:
        try:
            asyncio.run(_seed_key(args.redis_url, key, cluster))
        except ValueError as exc:
            print(f"inngest-like {args.command}: --event-key: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    app = create_app(executor)
    try:
        from dashboard import mount

        mount(app, executor)
    except ImportError:
        pass
    _banner(args, storage)
    # everything built so far (modules, the app, its routes) lives as long as the process:
    # out of the collector's sight, a full collection no longer walks it again and again
    # while runs go through
    gc.freeze()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    loop="uvloop" if _has_uvloop() else "asyncio",
                    # forwarded headers are believed only from --trust-proxy addresses
                    # (uvicorn's default trusts 127.0.0.1, which any local process is)
                    proxy_headers=bool(args.trust_proxy),
                    forwarded_allow_ips=args.trust_proxy,
                    timeout_graceful_shutdown=3)  # open dashboard streams end then
    finally:
        asyncio.run(_close(redis))
        if child:
            child.stop()


async def _check_layout(url: str, *, cluster: bool, migrate: bool,
                        shards: int | None) -> None:
    redis = connect(url, cluster=cluster)
    try:
        moved = await check(redis, migrate=migrate, shards=shards)
        if moved:
            print(f"renamed {moved} keys of a store of key layout 1", file=sys.stderr)
    finally:
        await redis.aclose()


async def _seed_key(redis_url: str | None, key: str, cluster: bool) -> None:
    if not redis_url:
        return  # dev mode accepts every key
    redis = connect(redis_url, cluster=cluster)
    try:
        await Auth(redis, production=True, signing_keys=[]).add_event_key(key, "cli", system_ms())
    finally:
        await redis.aclose()


async def _keys(args: argparse.Namespace) -> None:
    """`inngest-like keys add|revoke|list`: keys live hashed in Redis; a new key is shown
    once, here, and never again."""
    redis = connect(args.redis_url, cluster=is_cluster(args.redis_url))
    auth = Auth(redis, production=True, signing_keys=[])
    try:
        if args.action == "add":
            key = args.key or secrets.token_urlsafe(32)
            found = await auth.add_event_key(key, args.name, system_ms())
            print(f"event key (shown once): {key}\nfingerprint: {found[:16]}")
        elif args.action == "revoke":
            done = await auth.revoke_event_key(args.fingerprint or "")
            print({1: "revoked", 0: "no such key"}.get(done, "ambiguous fingerprint"))
            if done != 1:
                raise SystemExit(1)
        else:
            for entry in await auth.event_keys():
                print(f"{entry['fingerprint']}  {entry['hint']}  {entry['name']}")
    finally:
        await redis.aclose()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


async def _close(redis: Redis) -> None:
    try:
        await redis.aclose()
    except Exception:
        pass


if __name__ == "__main__":
    main()
