"""cProfile for the benchmarks' child processes, with a CPU-time clock.

`python -m bench._profile OUT -m MODULE [ARGS...]` runs MODULE as `python -m` would and
writes its profile to OUT when the module returns or the process gets SIGTERM or SIGINT
(uvicorn re-raises those after its graceful shutdown). A CPU clock keeps the time that a
coroutine spends suspended, waiting on a socket, out of the numbers.
"""

from __future__ import annotations

import cProfile
import io
import pathlib
import pstats
import runpy
import signal
import sys
import time
from typing import Any


def profile_args(out: pathlib.Path) -> list[str]:
    """What to put between `python` and `-m MODULE` to profile a child process."""
    return ["-m", "bench._profile", str(out)]


def _bucket(filename: str) -> str:
    """Where a profiled function lives: a package, a stdlib module, or C built-ins."""
    if filename == "~":
        return "(C built-ins)"
    if filename.startswith("<frozen"):
        return "(imports)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    path = pathlib.Path(filename)
    for parent in path.parents:
        if (parent / "pyproject.toml").exists():
            return path.relative_to(parent).parts[0]
    if "/lib/python" in filename:
        return "stdlib " + filename.split("/lib/python", 1)[1].split("/")[1].removesuffix(".py")
    return filename


def print_profile(name: str, path: pathlib.Path, lines: int = 20) -> None:
    """CPU time by package, then the functions with the most CPU time of their own."""
    if not path.exists():
        print(f"(no profile written for {name})")
        return
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    by_bucket: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, own, _, _) in raw.items():
        by_bucket[_bucket(filename)] = by_bucket.get(_bucket(filename), 0.0) + own
    total = sum(by_bucket.values()) or 1.0
    print(
        f"\n=== cProfile (CPU time) of the {name}: {path} (whole process life, start-up included)"
    )
    print(
        "own time by package: "
        + ", ".join(
            f"{bucket} {own / total:.0%}"
            for bucket, own in sorted(by_bucket.items(), key=lambda kv: -kv[1])[:12]
        )
    )
    stats.sort_stats("tottime").print_stats(lines)
    print("\n".join(line for line in text.getvalue().splitlines()[5:] if line.strip()))


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit("usage: python -m bench._profile OUT -m MODULE [ARGS...]")
    out, module = sys.argv[1], sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    signal.signal(signal.SIGTERM, _exit)
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
