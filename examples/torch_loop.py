"""QLAMLayer inside your own PyTorch training loop.

Task: each sequence is T random numbers; the label is whether the FIRST number is positive.
The answer is read only after the last token, so the model has to carry the first token through
T - 1 distractors: a job for the recurrent quantum memory (the layer's n-qubit state).

Model: nn.Linear embedding -> QLAMLayer(readout="last") -> nn.Linear head. QLAMLayer is an
ordinary torch module: (B, T, d_in) -> (B, d_out) with readout="last".

    python examples/torch_loop.py          # ~1 minute or less on 2 CPU cores
    python examples/torch_loop.py --tiny   # a few seconds (used by the tests)
"""

import argparse

import torch
from torch import nn

from qlam_qiskit import CellConfig, QLAMLayer, qlam_layer_ref

parser = argparse.ArgumentParser()
parser.add_argument("--tiny", action="store_true", help="small data and few epochs (for tests)")
args = parser.parse_args()
T, N_TRAIN, N_TEST, EPOCHS = (8, 128, 64, 3) if args.tiny else (16, 1024, 512, 10)
torch.manual_seed(0)


def make_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (n, T, 1) standard normal values; y: 1 where the first value is positive, else 0."""
    x = torch.randn(n, T, 1)
    return x, (x[:, 0, 0] > 0).long()


x_train, y_train = make_data(N_TRAIN)
x_test, y_test = make_data(N_TEST)


class FirstTokenClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(1, 8)  # token value -> 8 features
        # 4 independent 3-qubit memories ("heads"); each token's features set RZ angles, the
        # readout after the last token (readout="last") is mapped to 16 features.
        self.qlam = QLAMLayer(8, 16, heads=4, cell=CellConfig(qubits=3), readout="last")
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 1) -> logits (B, 2)
        return self.head(torch.relu(self.qlam(self.embed(x))))


model = FirstTokenClassifier()
# Plain AdamW. weight_decay=0 because the layer's circuit angles (qlam.mix, qlam.basis) are
# periodic: decaying them towards 0 has no meaning (the package's own train() exempts them).
opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
for epoch in range(1, EPOCHS + 1):
    order, total = torch.randperm(N_TRAIN), 0.0
    for i in range(0, N_TRAIN, 32):
        idx = order[i:i + 32]
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()  # gradients flow through the simulated circuit (exact engine)
        opt.step()
        total += loss.item() * len(idx)
    print(f"epoch {epoch} loss {total / N_TRAIN:.4f}")

with torch.no_grad():
    accuracy = (model(x_test).argmax(-1) == y_test).float().mean().item()
    # Sanity check: the plain-torch reference recomputes the layer gate by gate.
    feats = model.embed(x_test[:8])  # (8, T, 8): what the QLAM layer sees
    diff = (model.qlam(feats) - qlam_layer_ref(model.qlam, feats)).abs().max().item()
print(f"test accuracy {accuracy:.3f} (chance 0.5)")
print(f"reference check: max |layer(x) - qlam_layer_ref(layer, x)| = {diff:.1e}")
