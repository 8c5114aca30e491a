"""Backbones and the methods' heads and modules."""

from .backbones import Backbone, Classifier, SmallCNN, TimmBackbone, create_backbone

__all__ = ["Backbone", "Classifier", "SmallCNN", "TimmBackbone", "create_backbone"]
