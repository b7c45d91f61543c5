"""``python -m demo --out DIR [--seed 0] ...``: generate the demo datasets (see ``demo.data``)."""

import sys

from .data import main

if __name__ == "__main__":
    sys.exit(main())
