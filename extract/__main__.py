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


if __name__ == "__main__":
    from cache.cli_output import quiet_on_closed_pipe

    sys.exit(quiet_on_closed_pipe(main))
