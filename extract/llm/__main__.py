"""``python -m extract.llm priors|summaries ...`` (same as ``python -m extract priors|summaries``)."""
import sys

from .cli import main

raise SystemExit(main(sys.argv[1:]))
