"""Metrics by family: interpretability, uncertainty, segmentation, efficiency (QPM: classify.report)."""

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
from .plausibility import Plausibility, bootstrap_interval, patch_masks, plausibility

__all__ = ["AttributeAlignment", "Compactness", "PartAlignment", "attribute_alignment",
           "class_independence", "compactness", "dependence", "diversity_at_k",
           "feature_correlation", "part_alignment", "Plausibility", "bootstrap_interval",
           "patch_masks", "plausibility"]
