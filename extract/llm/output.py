"""Printing that survives a reader that went away (``python -m extract priors … | head``)."""

from __future__ import annotations

import sys
from typing import TextIO

from cache.cli_output import silence_stdout


def emit(message: str, file: TextIO | None = None) -> None:
    """Print ``message``; if stdout's reader is gone, stay quiet and let the run finish."""
    stream = file if file is not None else sys.stdout
    try:
        print(message, file=stream, flush=True)
    except BrokenPipeError:
        if stream is sys.stdout or file is None:
            silence_stdout()
