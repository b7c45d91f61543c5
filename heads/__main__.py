"""``python -m heads``: see :mod:`heads.cli`."""

from .cli import main

raise SystemExit(main())
