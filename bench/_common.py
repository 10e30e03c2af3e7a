"""Shared pieces of the benchmarks: process lifetime, the event loop, CPU accounting, stats."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import platform
import shutil
import signal
import statistics
import sys
import tempfile
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import psutil

from tests.procs import Proc

T = TypeVar("T")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed: the executor's uvicorn runs on uvloop too."""
    if loop_name() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in psutil.getloadavg())
    return (
        f"python {platform.python_version()}, {psutil.cpu_count()} cores "
        f"(load average {load}), event loop {loop_name()}, uvicorn http {uvicorn_http()}"
    )


def uvicorn_http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11 (httptools not installed)"
    return "httptools"


class CpuMeter:
    """CPU seconds (user + system) used by a set of named processes between two samples."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            times = proc.cpu_times()
            out[name] = times.user + times.system
        machine = psutil.cpu_times()
        out["others"] = (
            sum(machine) - machine.idle - getattr(machine, "iowait", 0.0) - sum(out.values())
        )
        return out

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        """CPU seconds per named process, and `others`: the rest of the machine's busy time
        (other people's processes compete for the same cores and skew the numbers)."""
        now = self._now()
        return {name: now[name] - self._start[name] for name in now}


@contextlib.contextmanager
def processes(prefix: str) -> Iterator[tuple[pathlib.Path, list[Proc]]]:
    """A log folder and a list of processes; every process in the list is stopped on the
    way out, whatever happened (exceptions, Ctrl-C, SIGTERM). Append a process to the
    list *before* starting it. Logs are kept (and their folder printed) on failure."""
    log_dir = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    started: list[Proc] = []

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    ok = False
    try:
        yield log_dir, started
        ok = True
    finally:
        for proc in reversed(started):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                print(f"could not stop {proc.name}: {exc!r}", file=sys.stderr)
        signal.signal(signal.SIGTERM, previous)
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            print(f"process logs kept in {log_dir}", file=sys.stderr)
            for proc in started:
                tail = proc.log()[-2000:]
                if tail.strip():
                    print(f"--- last lines of {proc.name}.log ---\n{tail}", file=sys.stderr)
