"""cache.progress: a tqdm bar on a terminal, a few plain lines (and a summary) in logs."""

from __future__ import annotations

import io

from cache.progress import LineProgress, progress


class Clock:
    """A fake clock advanced by hand (no real time in tests)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_line_per_interval_plus_a_summary():
    out, clock = io.StringIO(), Clock()
    bar = progress(total=100, desc="openai priors", unit="req", file=out, clock=clock)
    assert isinstance(bar, LineProgress)
    for _ in range(100):
        clock.t += 1.0  # 1 s per request: 100 updates, a line every 10 s
        bar.update(1)
    bar.close()
    bar.close()  # closing twice writes one summary
    lines = out.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0] == "openai priors: 10/100 req (10%) · 1.0 req/s · 10 s elapsed · ~1 min 30 s left"
    assert lines[-1] == "openai priors: done 100/100 req in 1 min 40 s (1.0 req/s)"


def test_iterating_and_disabled():
    out, clock = io.StringIO(), Clock()
    items = []
    for x in progress(range(5), desc="d", file=out, clock=clock):
        items.append(x)
    assert items == [0, 1, 2, 3, 4]
    assert out.getvalue().splitlines() == ["d: done 5/5 it in 0 s"]
    quiet = io.StringIO()
    assert list(progress([1, 2], file=quiet, enable=False)) == [1, 2] and quiet.getvalue() == ""


def test_terminal_gets_tqdm_and_a_closed_stream_is_silent():
    from tqdm.auto import tqdm

    bar = progress(total=3, desc="x", file=TTY())
    assert isinstance(bar, tqdm)
    bar.close()
    closed = io.StringIO()
    closed.close()  # e.g. the reading end of a pipe went away
    bar = progress(total=2, file=closed)
    bar.update(2)
    bar.close()  # no exception
