"""`inngest-like dev` and `inngest-like start`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import sys

import uvicorn
from redis.asyncio import Redis

from .api import create_app
from .embedded import RedisChild, has_redis_server
from .events import Limits
from .redis_client import connect
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
        cmd.add_argument("--redis-url", default=None)
        cmd.add_argument("--retry-interval", type=float, default=None,
                         help="flat retry backoff in seconds instead of Inngest's table")
        cmd.add_argument("--lease-seconds", type=float, default=20.0,
                         help="how long a dead worker's call stays leased before retry")
        cmd.add_argument("--workers", type=int, default=64,
                         help="concurrent calls per process")
        cmd.add_argument("--poll-interval", type=float, default=5.0,
                         help="seconds between re-syncs of -u apps")
        cmd.add_argument("--data-dir", default=".inngest-like",
                         help="embedded redis-server data folder (dev without --redis-url)")
        cmd.add_argument("--max-event-bytes", type=int, default=512 * 1024)
        cmd.add_argument("--no-worker", action="store_true", help="serve the API only")
        cmd.add_argument("--log-level", default="info")
    return parser


def _banner(args: argparse.Namespace, storage: str) -> None:
    print(f"inngest-like {args.command}: http://{args.host}:{args.port}", flush=True)
    print(f"  storage: {storage}", flush=True)
    for url in args.urls:
        print(f"  syncing app: {url}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per periodic re-sync
    if args.command == "start" and not args.redis_url:
        print("inngest-like start: --redis-url is required in production mode", file=sys.stderr)
        raise SystemExit(2)
    child: RedisChild | None = None
    redis: Redis
    if args.redis_url:
        redis = connect(args.redis_url)
        storage = f"redis at {args.redis_url}"
    elif has_redis_server():
        child = RedisChild(pathlib.Path(args.data_dir) / "redis")
        child.start()
        redis = connect(child.url)
        storage = f"embedded redis-server (AOF) in {child.data_dir}/, state survives restarts"
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
        slots=args.workers,
        poll_interval_s=args.poll_interval,
        limits=Limits(max_event_bytes=args.max_event_bytes),
        run_worker=not args.no_worker,
    )
    executor = Executor(redis, settings)
    app = create_app(executor)
    try:
        from dashboard import mount

        mount(app, executor)
    except ImportError:
        pass
    _banner(args, storage)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    loop="uvloop" if _has_uvloop() else "asyncio")
    finally:
        asyncio.run(_close(redis))
        if child:
            child.stop()


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
