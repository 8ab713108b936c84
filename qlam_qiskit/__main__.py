"""``python -m qlam_qiskit`` is the ``qlam-qiskit`` command (used by ``bench`` for its runs)."""

from .cli.main import main

main()
