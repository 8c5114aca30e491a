"""Backbones (small CNN, timm) and segmentation models; classifier heads are in companion.classify."""

from .backbones import Backbone, Classifier, SmallCNN, TimmBackbone, create_backbone

__all__ = ["Backbone", "Classifier", "SmallCNN", "TimmBackbone", "create_backbone"]
