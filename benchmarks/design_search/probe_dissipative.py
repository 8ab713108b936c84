"""Probe the dissipative prototype in QLAM's frame (same embedding/blocks/pool/head)."""
import json, os, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).parent))
from dissipative import DissipativeMixer
from qlam_qiskit.data import DataSpec
from qlam_qiskit.models import ModelConfig, QLAMClassifier
from qlam_qiskit.training.loop import TrainConfig, seed_everything, train
from qlam_qiskit.training.presets import preset

name, kw = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(int(kw.pop("_threads", 1)))
limit = kw.pop("_limit", 4000); epochs = kw.pop("_epochs", 3); ds = kw.pop("_downsample", 1)
tr = kw.pop("_train", {})
spec = DataSpec("smnist", os.environ.get("QLAM_DATA_DIR", "../shared/data") + "/mnist", downsample=ds, limit_train=limit, limit_test=500)
data = spec.load(0)
p = preset("smnist", ds)
cfg = ModelConfig(**p["model"], d_input=1, num_classes=10, max_len=data.seq_len if kw.pop("_pos", True) else 0)
seed_everything(0)
model = QLAMClassifier(cfg, mixer=lambda: DissipativeMixer(cfg.d_model, **kw))
tcfg = TrainConfig(**{**p["train"], "epochs": epochs, "seed": 0, **tr})
out = Path("runs/design_search") / name
t0 = time.time()
res = train(model, data, tcfg, out, progress=False)
rows = [json.loads(l) for l in open(out / "metrics.jsonl")]
print(json.dumps({"name": name, "overrides": sys.argv[2], "kind": "dqlam",
                  "val": [round(r["val_acc"], 4) for r in rows], "train": [round(r["train_acc"], 4) for r in rows],
                  "params": res["num_params"], "sps": round(rows[-1]["sample_steps_per_s"]), "wall": round(time.time() - t0)}), flush=True)
