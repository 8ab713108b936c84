"""Sequence models: the QLAM classifier and its layer."""

from .qlam import ModelConfig, ResidualBlock, QLAMClassifier, QLAMLayer

__all__ = ["ModelConfig", "ResidualBlock", "QLAMClassifier", "QLAMLayer"]
