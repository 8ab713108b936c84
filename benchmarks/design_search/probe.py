"""Screening probes for issue 14: full-length sMNIST (T=784), a subset of the training split,
validation accuracy only. Usage: python probe.py NAME '{"encoding": "ry_rz", ...}' [kind]"""
import json, os, sys, time
from pathlib import Path
import torch
from qlam_qiskit.data import DataSpec
from qlam_qiskit.training.run import plan_run, execute

name, overrides = sys.argv[1], json.loads(sys.argv[2])
kind = sys.argv[3] if len(sys.argv) > 3 else "qlam"
train = overrides.pop("_train", {})
limit = overrides.pop("_limit", 4000)
seed = int(overrides.pop("_seed", 0))
position = overrides.pop("_position", None)  # None: the task preset's (a learned embedding)
torch.set_num_threads(int(overrides.pop("_threads", 1)))
out = Path("runs/design_search") / name
spec = DataSpec("smnist", os.environ.get("QLAM_DATA_DIR", "../shared/data") + "/mnist", limit_train=limit, limit_test=500)
plan = plan_run(spec=spec, backend="statevector", kind=kind, model=overrides,
                train={"epochs": 3, **train}, seed=seed, out=out, position=position)
t0 = time.time()
res = execute(plan, progress=False, echo=print)
rows = [json.loads(l) for l in open(out / "metrics.jsonl")]
print(json.dumps({"name": name, "overrides": sys.argv[2], "kind": kind,
                  "val": [round(r["val_acc"], 4) for r in rows],
                  "train": [round(r["train_acc"], 4) for r in rows],
                  "params": res["num_params"], "sps": round(rows[-1]["sample_steps_per_s"]),
                  "wall": round(time.time() - t0)}), flush=True)
