"""What every command line shares about its output: ending quietly when the reader of stdout is gone.

``python -m cache info … | head`` closes the pipe after a few lines; the next write raises
BrokenPipeError. A tool killed by SIGPIPE exits with 141 and prints nothing: so do ours.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable

EXIT_CLOSED_PIPE = 141


def silence_stdout() -> int:
    """Point stdout at /dev/null (so the interpreter's final flush cannot fail) and return 141."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):  # stdout without a descriptor
        sys.stdout = open(os.devnull, "w")  # lives as long as the process
    return EXIT_CLOSED_PIPE


def quiet_on_closed_pipe(run: Callable[[], int]) -> int:
    """``run()``'s exit code, flushed; 141 without a traceback when the output's reader went away
    (argparse's ``--help`` and usage exits included)."""
    try:
        rc = run()
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        return silence_stdout()
    except SystemExit:  # argparse printed help or usage: flush it here, where a closed pipe is caught
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
        raise
