"""Datasets: synthetic data with ground truth, and loaders of the real datasets."""

from .concept_parts import ConceptParts, make_concept_parts
from .cub import CUB200

__all__ = ["CUB200", "ConceptParts", "make_concept_parts"]
