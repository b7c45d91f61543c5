"""``python -m extract <command> …``

Commands:
  embeddings   extract embeddings of a dataset into its cache store (extract.runner)
  priors       LLM class priors (extract.llm.cli)
  summaries    LLM metadata summaries (extract.llm.cli)
"""

from __future__ import annotations

import sys

COMMANDS = ("embeddings", "priors", "summaries")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "embeddings":
        from .runner import main as embeddings_main

        return embeddings_main(rest)
    if command in ("priors", "summaries"):
        from .llm.cli import main as llm_main  # imported lazily: the LLM tier needs openai

        return int(llm_main(argv) or 0)
    print(
        f"unknown command {command!r}; expected one of: {', '.join(COMMANDS)}\n\n{__doc__.strip()}",
        file=sys.stderr,
    )
    return 2


def _main_quiet_on_closed_pipe() -> int:
    """``main()``, ending quietly (exit 141, as a tool killed by SIGPIPE) when the reader of the output
    went away (``| head``)."""
    import os

    try:
        rc = main()
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141


if __name__ == "__main__":
    sys.exit(_main_quiet_on_closed_pipe())
