"""Backbone registry: one module per backbone in this folder, each registering itself."""

from .base import (
    Backbone,
    BackboneConfig,
    BackboneSpec,
    available_backbones,
    build_backbone,
    register_backbone,
)

__all__ = [
    "Backbone",
    "BackboneConfig",
    "BackboneSpec",
    "available_backbones",
    "build_backbone",
    "register_backbone",
]
