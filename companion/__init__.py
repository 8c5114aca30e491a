"""Companion package of the book: data, models, solvers, metrics and figures for every chapter."""

from .runtime import Profile, cache_dir, get_profile, resolve_device, seed_everything, set_profile

__version__ = "0.1.0"
__all__ = ["Profile", "cache_dir", "get_profile", "resolve_device", "seed_everything", "set_profile"]
