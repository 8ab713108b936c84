"""Screening probe: the diagonal SSM baseline with its decay removed (|λ| = 1, frozen): a
unitary diagonal recurrence that never forgets, as QLAM's memories are. Does forgetting explain
the gap? Usage: python probe_ssm_nodecay.py NAME '{"_limit": 20000, "_train": {...}}'"""
import runpy
import sys

import torch

from qlam_qiskit.models import baselines

_init = baselines._DiagonalSSM.__init__


def _no_decay(self, d: int, n: int) -> None:
    _init(self, d, n)
    with torch.no_grad():
        self.log_rate.fill_(-40.0)  # exp(-exp(-40)) = 1 to double precision: no decay
    self.log_rate.requires_grad_(False)


baselines._DiagonalSSM.__init__ = _no_decay
sys.argv = [sys.argv[0].replace("probe_ssm_nodecay", "probe"), sys.argv[1], sys.argv[2], "ssm"]
runpy.run_path(sys.argv[0], run_name="__main__")
