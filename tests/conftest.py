"""Hypothesis profiles: the suite draws the same examples on every run ("repeatable", the default),
so a CI result can be reproduced; ``pytest --hypothesis-profile=explore`` draws fresh ones."""

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", max_examples=200)
settings.load_profile("repeatable")
