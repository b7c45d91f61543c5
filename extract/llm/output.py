"""Printing that survives a reader that went away (``python -m extract priors … | head``)."""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO


def silence_stdout() -> None:
    """Send the rest of stdout to /dev/null (also what the interpreter flushes at exit)."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        sys.stdout = open(os.devnull, "w")


def emit(message: str, file: TextIO | None = None) -> None:
    """Print ``message``; if stdout's reader is gone, stay quiet and let the run finish."""
    stream = file if file is not None else sys.stdout
    try:
        print(message, file=stream, flush=True)
    except BrokenPipeError:
        if stream is sys.stdout or file is None:
            silence_stdout()
