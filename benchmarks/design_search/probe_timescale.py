"""Probe the time-scale QLAM prototype in QLAM's frame (same embedding/blocks/pool/head)."""
import json, os, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from timescale import TimescaleQLAM
from qlam_qiskit.data import DataSpec
from qlam_qiskit.circuits.cell import qlam_cell
from qlam_qiskit.models import ModelConfig, QLAMClassifier
from qlam_qiskit.training.loop import TrainConfig, seed_everything, train
from qlam_qiskit.training.presets import preset

name, kw = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(int(kw.pop("_threads", 1)))
limit = kw.pop("_limit", 4000); epochs = kw.pop("_epochs", 3); ds = kw.pop("_downsample", 1)
tr = kw.pop("_train", {}); task = kw.pop("_task", "smnist")
folder = {"smnist": "mnist", "sfashion": "fashion_mnist", "scifar10": "cifar10"}.get(task, task)
spec = DataSpec(task, os.environ.get("QLAM_DATA_DIR", "../shared/data") + "/" + folder, downsample=ds, limit_train=limit, limit_test=500)
data = spec.load(0)
p = preset(task, ds)
mkw = {**p["model"], **kw.pop("_model", {})}
cfg = ModelConfig(**mkw, d_input=data.channels, num_classes=10,
                  max_len=data.seq_len if kw.pop("_pos", True) else 0)
seed_everything(0)
cell = qlam_cell(cfg.cell_config())
model = QLAMClassifier(cfg, mixer=lambda: TimescaleQLAM(cfg.d_model, heads=cfg.heads, cell=cell,
                                                        queries=cfg.queries, correlators=cfg.correlators, **kw))
tcfg = TrainConfig(**{**p["train"], "epochs": epochs, "seed": 0, **tr})
out = Path("runs/design_search") / name
t0 = time.time()
res = train(model, data, tcfg, out, progress=False)
rows = [json.loads(l) for l in open(out / "metrics.jsonl")]
print(json.dumps({"name": name, "overrides": sys.argv[2], "kind": "tqlam",
                  "val": [round(r["val_acc"], 4) for r in rows], "train": [round(r["train_acc"], 4) for r in rows],
                  "params": res["num_params"], "sps": round(rows[-1]["sample_steps_per_s"]), "wall": round(time.time() - t0)}), flush=True)
