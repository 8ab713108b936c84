"""What a run is, once checked: ``RunPlan`` (data, model, optimisation, backend, folder) and
how a primitives backend trains (``PrimitiveOptions``), plus how a run records a user's cell."""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..backends import Backend
from ..backends.primitives.estimator import RuntimeOptions
from ..backends.primitives.transpile import TranspileOptions
from ..circuits.cell import CellTemplate
from ..circuits.custom import cell_from_bytes, cell_info, cell_to_bytes
from ..data import DataSpec
from ..errors import CheckpointError
from ..models import ModelConfig
from .loop import TrainConfig


SCOPES = ("all", "head")
"""What a primitives run trains: everything, or only the classical parts after the circuit."""


@dataclass(frozen=True)
class PrimitiveOptions:
    """How a primitives backend trains: what is trained, the gradient, transpiling and Estimator."""

    scope: str = "all"
    """all, or head: freeze the circuit and everything before it. Default: "all"."""
    gradient: str = "shift"
    """shift (exact parameter shift) or spsa (2 circuits per sample). Default: "shift"."""
    transpile: TranspileOptions = field(default_factory=TranspileOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    layout: tuple[int, ...] | None = None
    """Device qubits of the memory (from --entanglement coupling). Default: None."""

    def given(self) -> list[str]:
        """The options set away from their defaults, as CLI flags (the exact engine refuses them)."""
        flags = [f for f, on in (("--train-scope", self.scope != "all"),
                                 ("--gradient", self.gradient != "shift"),
                                 ("--shots", bool(self.runtime.shots))) if on]
        return flags + self.runtime.device_only()

    def record(self) -> dict:
        """What the checkpoint stores, so a resumed run uses the same settings."""
        return {"train_scope": self.scope, "gradient": self.gradient,
                "transpile": asdict(self.transpile), "runtime": asdict(self.runtime),
                "layout": list(self.layout) if self.layout else None}

    @classmethod
    def from_record(cls, state: dict) -> PrimitiveOptions:
        t = dict(state["transpile"])
        t["initial_layout"] = tuple(t["initial_layout"]) if t.get("initial_layout") else None
        return cls(state["train_scope"], state["gradient"], TranspileOptions(**t),
                   RuntimeOptions(**state["runtime"]),
                   tuple(state["layout"]) if state.get("layout") else None)


@dataclass
class RunPlan:
    """Everything a run needs, checked: data, model, optimisation, backend, folder."""

    spec: DataSpec
    kind: str
    """qlam or a baseline name."""
    model: ModelConfig
    train: TrainConfig
    backend: Backend
    out: Path
    position: bool
    """Learn a position embedding (its length is set from the data)."""
    primitives: PrimitiveOptions = field(default_factory=PrimitiveOptions)
    state: dict | None = None
    """The checkpoint being resumed, else None."""
    cell: CellTemplate | None = None
    """A user's own cell circuit (stored in the checkpoint), else None: the QLAM cell of ``model``."""

    @property
    def resume(self) -> bool:
        return self.state is not None


def stored_cell(state: dict) -> CellTemplate | None:
    """The user's own cell circuit a checkpoint (or result.json) holds; None for the QLAM cell."""
    rec = state.get("cell")
    if not rec:
        return None
    try:
        return cell_from_bytes(base64.b64decode(rec["qpy_base64"]))
    except Exception as err:  # noqa: BLE001 - a damaged record: one line, not a QPY traceback
        raise CheckpointError(f"the checkpoint's cell circuit cannot be read "
                              f"({type(err).__name__}); it is damaged") from None


def stored_configs(state: dict, where: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """The model and training settings a checkpoint holds, or one CheckpointError line when
    they are not this version's (an unknown or missing field)."""
    legacy = {"dt_min": 0.0, "dt_max": 0.0,  # written before time scales: none
              "attn_head_dim": 0,  # before head widths: the transformer's old head split
              "gate": False,  # before readout gates: none
              "selective": False}  # before selective damping: none
    try:
        return (ModelConfig(**{**legacy, **state["model_config"]}),
                TrainConfig(**state["train_config"]))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: its model_config/train_config is not this version's "
                              f"({str(err).splitlines()[0]}); use the qlam-qiskit that wrote "
                              "it, or rerun into a new --out") from None


def cell_record(cell: CellTemplate | None) -> dict:
    """What a run records about a user's own cell: a summary and its QPY (base64, so result.json
    holds it too); nothing for the QLAM cell, which the model config describes."""
    if cell is None:
        return {}
    return {"cell": {**cell_info(cell), "qpy_base64": base64.b64encode(cell_to_bytes(cell)).decode()}}
