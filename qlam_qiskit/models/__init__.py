"""Sequence models: the QLAM classifier and its layer."""

from .qlam import ModelConfig, QLAMBlock, QLAMClassifier, QLAMLayer

__all__ = ["ModelConfig", "QLAMBlock", "QLAMClassifier", "QLAMLayer"]
