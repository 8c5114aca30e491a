"""Metrics by family: interpretability, uncertainty, segmentation, efficiency (QPM: classify.report)."""

from .bootstrap import bootstrap_interval
from .interpretability import (
                               AttributeAlignment,
                               Compactness,
                               PartAlignment,
                               attribute_alignment,
                               class_independence,
                               compactness,
                               dependence,
                               diversity_at_k,
                               feature_correlation,
                               part_alignment,
)

__all__ = ["AttributeAlignment", "Compactness", "PartAlignment", "attribute_alignment", "bootstrap_interval",
           "class_independence", "compactness", "dependence", "diversity_at_k",
           "feature_correlation", "part_alignment"]
