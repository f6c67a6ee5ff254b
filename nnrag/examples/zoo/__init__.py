"""A tiny model zoo laid out like a real library: layers, models, re-exports."""

from .layers import *  # noqa: F403
from .models import ResNetTiny, TinyViT

__version__ = "0.1.0"
