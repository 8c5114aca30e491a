"""Companion package of the book: data, models, solvers, metrics and figures for every chapter."""

from .runtime import Profile, cache_dir, get_profile, resolve_device, seed_everything, set_profile
from .worlds import describe_world

__version__ = "0.1.0"
__all__ = ["Profile", "cache_dir", "describe_world", "get_profile", "resolve_device", "seed_everything",
           "set_profile"]
