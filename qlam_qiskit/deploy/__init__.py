"""Deploying trained weights: evaluation on any backend, and export of bound circuits."""

from .evaluate import evaluate_on, load_models, query_readouts, load_test_split
from .export import FORMATS, export_sample

__all__ = ["FORMATS", "evaluate_on", "export_sample", "load_models", "query_readouts", "load_test_split"]
