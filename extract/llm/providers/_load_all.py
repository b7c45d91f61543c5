"""Import every provider module of this folder so that each registers itself."""

import importlib
import pkgutil
from pathlib import Path

for _info in pkgutil.iter_modules([str(Path(__file__).parent)]):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__package__}.{_info.name}")
