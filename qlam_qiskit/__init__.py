"""QLAM: quantum recurrent sequence models on Qiskit, trained with an exact torch engine."""

__version__ = "0.1.0"
