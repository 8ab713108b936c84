"""Training loop shared by QLAM and the baselines: AdamW, warmup + cosine, clipping, resume;
data-parallel over the ranks of a ``Group`` (torchrun) with the single-process batches and result."""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import CheckpointError, QLAMError
from ..io import CHECKPOINT, check_free_space, load_checkpoint, save_json, save_jsonl, save_torch
from .distributed import SINGLE, Group

Tensor = torch.Tensor


@dataclass
class TrainConfig:
    """Optimisation settings; ``asdict`` of it is stored in every checkpoint."""

    epochs: int = 10
    """Passes over the training split. Default: 10."""
    batch_size: int = 64
    """Training batch size. Default: 64."""
    lr: float = 3e-3
    """Peak learning rate of classical parameters. Default: 3e-3."""
    circuit_lr: float = 1e-2
    """Peak learning rate of circuit angles (mixing and basis angles, no weight decay). Default: 1e-2."""
    weight_decay: float = 0.05
    """AdamW weight decay on classical weight matrices (not biases, norms or angles). Default: 0.05."""
    warmup: float = 0.05
    """Fraction of all steps spent in linear warmup before the cosine decay. Default: 0.05."""
    clip: float = 1.0
    """Gradient-norm clip. Default: 1.0."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing. Default: 0.0."""
    eval_batch_size: int = 256
    """Batch size for validation and test. Default: 256."""
    seed: int = 0
    """Seed for initialisation, shuffling and dropout; CPU runs repeat exactly. Default: 0."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:N. Default: "cpu"."""


def check_device(device: str) -> torch.device:
    """The torch device a run trains on: cpu, cuda or cuda:N present here; anything else is one
    QLAMError line naming the choices."""
    kind, colon, index = device.partition(":")
    if device == "cpu":
        return torch.device("cpu")
    if kind == "cuda" and (not colon or index.isdigit()):
        if not torch.cuda.is_available():
            raise QLAMError(f"--device {device}: no CUDA device is visible to torch here; "
                            "use --device cpu or install a CUDA build of torch")
        n = torch.cuda.device_count()
        if index and int(index) >= n:
            raise QLAMError(f"--device {device}: this machine has {n} CUDA device(s), "
                            f"cuda:0..cuda:{n - 1}")
        return torch.device(device)
    raise QLAMError(f"--device {device}: choose cpu, cuda or cuda:N (the engine runs on CPUs "
                    "and CUDA GPUs)")


def checkpoint_bytes(model: nn.Module) -> int:
    """About how large a checkpoint of ``model`` is: weights and buffers, AdamW's two moments of
    every trainable parameter, a few hundred bytes of framing per tensor, 64 KiB for the rest."""
    n = 64 * 1024
    for p in model.parameters():
        n += p.numel() * p.element_size() * (3 if p.requires_grad else 1) + 3 * 512
    for b in model.buffers():
        n += b.numel() * b.element_size() + 512
    return n


def check_run_space(out: str | Path, model: nn.Module) -> None:
    """Refuse a run whose folder's disk cannot hold one more checkpoint (the previous one stays
    until the next is complete) plus a megabyte for metrics and results."""
    check_free_space(out, checkpoint_bytes(model) + (1 << 20))


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Three groups: decayed weight matrices, undecayed biases/norms, circuit angles (own lr)."""
    decay, no_decay, circuit = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        opt = getattr(p, "_optim", {})
        if opt.get("circuit"):
            circuit.append(p)
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
              {"params": circuit, "weight_decay": 0.0, "lr": cfg.circuit_lr}]
    return [g for g in groups if g["params"]]


def warmup_cosine(total: int, warmup: float) -> Callable[[int], float]:
    """LR multiplier: linear warmup over ``warmup``·total steps, then cosine to zero."""
    w = max(1, int(warmup * total))

    def f(step: int) -> float:
        if step < w:
            return (step + 1) / w
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))

    return f


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256,
             device: str = "cpu", group: Group = SINGLE) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x (N, T, C), y (N,)); over several ranks
    each evaluates its share x[rank::world] and the sums are added up."""
    if len(x) == 0:
        return float("nan"), float("nan")
    model.eval()
    if group.world > 1:
        x, y = x[group.rank::group.world], y[group.rank::group.world]  # (N/world, T, C)
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        logits = model(xb)  # (B, classes)
        loss += nn.functional.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(-1) == yb).sum().item()
    n = len(x)
    if group.world > 1:
        loss, correct, n = group.sum([loss, correct, n])
    return loss / n, correct / n


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def shard(idx: Tensor, group: Group) -> tuple[Tensor, float]:
    """This rank's share of a global batch ``idx`` and the weight of its mean loss, so that the
    ranks' gradients averaged (as DDP does) equal the gradient of the whole batch's mean loss:
    len(share)·world/len(idx). A rank left without samples (a last batch smaller than world)
    takes one sample at weight 0, so it still joins the gradient all-reduce."""
    mine = idx[group.rank::group.world]
    if len(mine) == 0:
        return idx[:1], 0.0
    return mine, len(mine) * group.world / len(idx)


def train(model: nn.Module, data: Any, cfg: TrainConfig, out: str | Path, *,
          meta: dict | None = None, resume: bool | dict = False, progress: bool = True,
          group: Group = SINGLE) -> dict:
    """Train on ``data`` (a TaskData), writing checkpoint.pt, metrics.jsonl and result.json to ``out``.

    With ``resume`` (True, or the checkpoint already loaded) training continues from the epoch after
    the checkpoint in ``out``, restoring optimiser, schedule and RNG state, so the final weights
    equal an uninterrupted run.

    Over a ``group`` of several ranks (torchrun), every step takes the same global batch as one
    process would, each rank its share of it (``shard``), and DistributedDataParallel averages
    the gradients; metrics are summed over ranks, rank 0 alone prints and writes the files. The
    final weights equal a one-process run's up to float reduction order, and a checkpoint
    resumes at any number of processes.
    """
    out = Path(out)
    if group.is_main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    device = torch.device(cfg.device)
    model.to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.epochs * steps_per_epoch,
                                                                 cfg.warmup))
    metrics: list[dict] = []
    start_epoch, train_seconds = 0, 0.0
    if resume:
        state = resume if isinstance(resume, dict) else load_checkpoint(ckpt_path)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{ckpt_path}: its weights do not match its model_config "
                                  f"({str(err).splitlines()[0][:120]}); rerun without --resume "
                                  "into a new --out") from None
        try:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{ckpt_path}: its optimizer, schedule or RNG state cannot be "
                                  f"restored ({type(err).__name__}); rerun without --resume into "
                                  "a new --out") from None
        metrics, start_epoch = state["metrics"], state["epoch"]
        train_seconds = state["train_seconds"]
        # an interrupt between the checkpoint's write and the metrics' leaves the file a row short
        group.on_main(lambda: save_jsonl(metrics, out / "metrics.jsonl"))
    n_params = sum(p.numel() for p in model.parameters())
    seq_len = data.x_train.shape[1]
    net = model  # what the steps call: the model, or its DDP wrapper over several ranks
    if group.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    progress = progress and group.is_main

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = torch.randperm(len(data.x_train),
                               generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        # seen: samples of all ranks; mine, loss_sum, correct: this rank's (summed after)
        t0, seen, mine, loss_sum, correct = time.perf_counter(), 0, 0, 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, leave=False, dynamic_ncols=True)
        for i in bar:
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            part, weight = shard(idx, group)  # all of idx, weight 1.0, in one process
            xb, yb = data.x_train[part].to(device), data.y_train[part].to(device)
            logits = net(xb)  # (B, classes)
            loss = nn.functional.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            (loss if weight == 1.0 else loss * weight).backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            sched.step()
            seen += len(idx)
            if weight:
                mine += len(part)
                loss_sum += loss.item() * len(part)
                correct += (logits.argmax(-1) == yb).sum().item()
            rate = seen * seq_len / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss_sum / max(1, mine):.3f}",
                            acc=f"{correct / max(1, mine):.3f}", steps_s=f"{rate:,.0f}")
        bar.close()
        if group.world > 1:
            loss_sum, correct = group.sum([loss_sum, correct])
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, cfg.eval_batch_size, device,
                                     group)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "val_loss": val_loss, "val_acc": val_acc, "lr": sched.get_last_lr()[0],
               "seconds": seconds, "sample_steps_per_s": seen * seq_len / seconds}
        metrics.append(row)
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                       f"train {row['train_acc']:.3f}  val {val_acc:.3f}  "
                       f"{row['sample_steps_per_s']:,.0f} sample-steps/s  {seconds:.1f}s")
        # meta first: its keys (e.g. "model": "qlam") must not clobber the training state
        state = {**(meta or {}), "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                 "epoch": epoch + 1, "metrics": metrics, "train_seconds": train_seconds,
                 "train_config": asdict(cfg)}
        group.on_main(lambda: (save_torch(state, ckpt_path),
                               save_jsonl(metrics, out / "metrics.jsonl")))

    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, cfg.eval_batch_size, device,
                                   group)
    last = metrics[-1] if metrics else {}
    result = {"task": data.name, "test_accuracy": test_acc, "test_loss": test_loss,
              "val_accuracy": last.get("val_acc"), "num_params": n_params, "epochs": cfg.epochs,
              "train_seconds": train_seconds, "seq_len": seq_len,
              "train_size": len(data.x_train), "test_size": len(data.x_test),
              "sample_steps_per_s": last.get("sample_steps_per_s"),
              "threads": torch.get_num_threads(), "world_size": group.world,
              "train_config": asdict(cfg), **(meta or {})}
    group.on_main(lambda: save_json(result, out / "result.json"))
    return result
