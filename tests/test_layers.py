"""The architecture holds: no import cycles, no upward imports (scripts/check_layers.py), and the
checker really catches both."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_layers", ROOT / "scripts" / "check_layers.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def test_the_package_has_no_cycles_and_no_upward_imports():
    assert check.problems(ROOT) == []


def test_the_checker_catches_cycles_upward_imports_and_engine_primitives_mixing(tmp_path: Path):
    pkg = tmp_path / "qlam_qiskit"
    files = {
        "__init__.py": "", "errors.py": "", "io.py": "from .errors import x\n",
        "circuits/__init__.py": "", "circuits/cell.py": "from ..models.qlam import M\n",
        "models/__init__.py": "", "models/qlam.py": "from ..circuits.cell import C\n",
        "backends/__init__.py": "", "backends/engine/__init__.py": "",
        "backends/engine/kernels.py": "def f():\n    from ..primitives import qnn\n",
        "backends/primitives/__init__.py": "", "backends/primitives/qnn.py": "",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    found = check.problems(tmp_path)
    assert any(p.startswith("import cycle: circuits.cell -> models.qlam") for p in found), found
    assert any("upward import: qlam_qiskit.circuits.cell" in p for p in found), found
    assert any("backends.engine and backends.primitives stay apart" in p for p in found), found
