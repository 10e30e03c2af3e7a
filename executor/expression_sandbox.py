"""A child process that evaluates the CEL expressions with loops, under a time and memory
budget, so that no expression can stall or kill the executor.

A comprehension (`event.data.items.map(i, ...)`) costs time that grows with the event's
lists (the library's `map` and `filter` are quadratic: 8,000 items take 2 s, a 512 KiB event
of small numbers would take an hour), and the library holds the GIL and cannot be
interrupted. Here such an evaluation runs in a long-lived child: one JSON line in
(`[source, variables]`), one JSON line out (`{"ok": value}` or `{"error": message}`). A
child that overruns its time is killed, one that dies (out of memory, a crash) is noticed,
and either way the next call starts a fresh one; the expression counts as not matching.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import pathlib
import select
import subprocess
import sys
import threading
import time
from typing import Any

import orjson

log = logging.getLogger("inngest_like.executor")

TIMEOUT_S = 1.0
START_TIMEOUT_S = 30.0  # a child's start-up (imports) is not charged to an evaluation
MEMORY_BYTES = 1 << 30
_ROOT = str(pathlib.Path(__file__).resolve().parent.parent)


class SandboxError(RuntimeError):
    """The evaluation ran out of time or memory, or its process died."""


class Sandbox:
    def __init__(self, timeout_s: float = TIMEOUT_S, memory_bytes: int = MEMORY_BYTES) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.started = 0  # children started so far (tests: a killed child is replaced)

    def _spawn(self) -> subprocess.Popen[bytes]:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}
        self.started += 1
        self._child = subprocess.Popen(
            [sys.executable, "-m", "executor.expression_sandbox", str(self.memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=_ROOT,
        )
        try:
            ready = self._read_line(self._child, START_TIMEOUT_S) == b"ready\n"
        except SandboxError:
            ready = False
        if not ready:
            self._reap()
            raise SandboxError("the evaluating process did not start")
        return self._child

    def evaluate(self, source: str, variables: dict[str, Any]) -> Any:
        """The expression's value, or SandboxError; a CEL error (no such field) gives None."""
        request = orjson.dumps([source, variables]) + b"\n"
        with self._lock:
            for fresh in (False, True):
                child = self._child
                if child is not None and child.poll() is not None:
                    self._reap()  # it died since the last call: close its pipes
                    child = None
                if child is None:
                    child, fresh = self._spawn(), True
                assert child.stdin is not None
                try:
                    child.stdin.write(request)
                    child.stdin.flush()
                except (BrokenPipeError, OSError):
                    self._reap()
                    if fresh:
                        raise SandboxError("the evaluating process did not start") from None
                    continue  # it had died since the last call: once more, with a new one
                answer = orjson.loads(self._read_line(child, self.timeout_s))
                return answer.get("ok")
        raise AssertionError("unreachable")

    def _read_line(self, child: subprocess.Popen[bytes], timeout_s: float) -> bytes:
        assert child.stdout is not None
        fd = child.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buffer = bytearray()
        while not buffer.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._reap()
                raise SandboxError(f"the evaluation took longer than {timeout_s:g}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self._reap()
                raise SandboxError(f"the evaluating process died (exit status {code})")
            buffer += chunk
        return bytes(buffer)

    def _reap(self) -> int | None:
        child, self._child = self._child, None
        if child is None:
            return None
        if child.poll() is None:
            child.kill()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        return child.wait()

    def close(self) -> None:
        with self._lock:
            self._reap()


_default = Sandbox()
atexit.register(_default.close)


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    """The value of `source` computed in the shared sandbox; None when it failed."""
    try:
        return _default.evaluate(source, variables)
    except SandboxError as exc:
        # the expression, never the variables: they are the event's data
        log.warning("expression %r was not evaluated: %s; it counts as false", source[:200], exc)
        return None


# -- the child ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def _program(source: str) -> Any:
    import cel

    return cel.compile(source)


def serve(memory_bytes: int) -> None:
    """The child's loop: read a request line, answer a line, until stdin closes."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import cel  # noqa: F401 - loaded before saying ready, so evaluations start at once

    sys.stdout.buffer.write(b"ready\n")
    sys.stdout.buffer.flush()
    for line in sys.stdin.buffer:
        try:
            source, variables = orjson.loads(line)
            answer = orjson.dumps({"ok": _program(source).execute(variables)}, default=str)
        except BaseException as exc:  # CEL errors (no such field, overflow), Rust panics
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            answer = orjson.dumps({"ok": None, "error": f"{exc.__class__.__name__}: {exc}"})
        sys.stdout.buffer.write(answer + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_BYTES)
