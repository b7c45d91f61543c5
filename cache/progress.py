"""One progress reporter for every tool: a tqdm bar on a terminal, plain log lines elsewhere.

``progress(iterable=None, total=..., desc=..., unit=..., enable=True)`` returns an object
that can be iterated (when given an iterable), ``update(n)``-ed, ``close()``-d and used as a
context manager. On a terminal (the stream is a tty) it is a normal tqdm bar. Off a terminal
(CI, ``nohup``, a pipe) tqdm would write one line per refresh, so instead it writes a plain
line at most every ``interval`` seconds (10 by default) and one summary line when closed::

    openai priors: 120/1000 req (12%) · 11.8 req/s · 10 s elapsed · ~75 s left
    openai priors: done 1000/1000 req in 84 s (11.9 req/s)

``enable=False`` gives the same object that prints nothing. A stream that was closed under
it (a pipe to ``head``) silences the reporter instead of failing the run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

DEFAULT_INTERVAL = 10.0


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _fmt_seconds(s: float) -> str:
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s // 60:.0f} min {s % 60:02.0f} s"
    return f"{s // 3600:.0f} h {(s % 3600) // 60:02.0f} min"


class LineProgress:
    """Plain-line progress for logs (see module docstring); also the disabled reporter."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        enable: bool = True,
        file: TextIO | None = None,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.enable, self.file, self.interval, self.clock = enable, file, interval, clock
        self.n = self.n0 = 0  # n0: the count it started from (tqdm's ``initial``)
        self.start = clock()
        self.last_line = self.start
        self.closed = False

    # ---------------------------------------------------------------- output
    def _write(self, line: str) -> None:
        if not self.enable:
            return
        stream = self.file or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):  # reader gone (e.g. `| head`): stay quiet
            self.enable = False

    def _prefix(self) -> str:
        return f"{self.desc}: " if self.desc else ""

    def _status(self, now: float) -> str:
        elapsed = now - self.start
        rate = (self.n - self.n0) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if self.total:
            parts[0] += f" ({100.0 * self.n / self.total:.0f}%)"
        parts += [f"{rate:.1f} {self.unit}/s", f"{_fmt_seconds(elapsed)} elapsed"]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"~{_fmt_seconds((self.total - self.n) / rate)} left")
        return self._prefix() + " · ".join(parts)

    # ---------------------------------------------------------------- tqdm-like interface
    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last_line >= self.interval:
            self.last_line = now
            self._write(self._status(now))

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """tqdm's per-refresh detail: not shown in log lines."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        elapsed = self.clock() - self.start
        rate = f" ({(self.n - self.n0) / elapsed:.1f} {self.unit}/s)" if elapsed > 0 else ""
        of = f"/{self.total}" if self.total else ""
        self._write(f"{self._prefix()}done {self.n}{of} {self.unit} in {_fmt_seconds(elapsed)}{rate}")

    def __iter__(self):
        if self.iterable is None:
            raise TypeError("progress(): nothing to iterate (pass an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enable: bool = True,
    file: TextIO | None = None,
    interval: float = DEFAULT_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
    **tqdm_kwargs: Any,
):
    """A progress reporter: tqdm on a terminal, :class:`LineProgress` lines off one (see module docstring).

    ``file`` defaults to stderr; ``tqdm_kwargs`` (e.g. ``leave``, ``initial``) go to tqdm only.
    """
    stream = file or sys.stderr
    if enable and _is_tty(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, **tqdm_kwargs)
    bar = LineProgress(iterable, total, desc, unit, enable, file, interval, clock)
    initial = int(tqdm_kwargs.get("initial", 0) or 0)
    bar.n = bar.n0 = initial
    return bar
