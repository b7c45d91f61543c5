"""Front-ends in float32 whatever the caller's autocast.

Spectrogram front-ends overflow in float16 (a full-scale 8 kHz tone at 32 kHz gives Kaldi
filterbank energies above 65504, i.e. ``inf``, and then a NaN embedding) and lose precision in
bfloat16. Every backbone computes its front-end inside :func:`float32_region` on a float32
input; the network after it still runs under the caller's autocast. Modules of third-party
code (``laion_clap``'s HTSAT) get the same treatment through :func:`run_in_float32`, which
keeps their state-dict names.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


@contextlib.contextmanager
def float32_region(device: torch.device | str) -> Iterator[None]:
    """Autocast off for ``device``'s type (inputs must already be float32; see :func:`as_float32`)."""
    kind = torch.device(device).type
    if kind not in AUTOCAST_DEVICES:
        yield
        return
    with torch.autocast(device_type=kind, enabled=False):
        yield


def as_float32(value: Any) -> Any:
    """Floating tensors (also inside tuples, lists and dicts) cast to float32; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: as_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_float32(v) for v in value)
    return value


def _device_of(args: tuple, kwargs: dict) -> torch.device:
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def _float32_method(method):
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with float32_region(_device_of(args, kwargs)):
            return method(self, *as_float32(args), **as_float32(kwargs))

    wrapped._float32 = True
    return wrapped


_CLASSES: dict[tuple[type, tuple[str, ...]], type] = {}


def run_in_float32(module: nn.Module, *methods: str) -> nn.Module:
    """Make ``module``'s ``methods`` (default ``forward``) run in float32 outside autocast, in place.

    The module's class is swapped for a subclass whose methods cast floating inputs to float32
    and switch autocast off: parameters, buffers and state-dict names stay as they are, and
    ``copy.deepcopy`` keeps the behaviour. Calling it twice changes nothing.
    """
    methods = methods or ("forward",)
    cls = type(module)
    todo = tuple(m for m in methods if not getattr(getattr(cls, m), "_float32", False))
    if not todo:
        return module
    key = (cls, todo)
    if key not in _CLASSES:
        body = {m: _float32_method(getattr(cls, m)) for m in todo}
        _CLASSES[key] = type(f"Float32{cls.__name__}", (cls,), {**body, "__module__": cls.__module__})
    module.__class__ = _CLASSES[key]
    return module


__all__ = ["float32_region", "as_float32", "run_in_float32"]
