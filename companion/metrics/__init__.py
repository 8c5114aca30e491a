"""Metrics by family: interpretability, uncertainty, segmentation, efficiency (QPM: classify.report)."""

from .bootstrap import Interval, bootstrap_interval, mean_interval
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
from .plausibility import Plausibility, patch_masks, plausibility

__all__ = ["AttributeAlignment", "Compactness", "Interval", "PartAlignment", "Plausibility",
           "attribute_alignment", "bootstrap_interval", "class_independence", "compactness",
           "dependence", "diversity_at_k", "feature_correlation", "mean_interval", "part_alignment",
           "patch_masks", "plausibility"]
