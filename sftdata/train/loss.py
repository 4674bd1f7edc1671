"""The loss: sum of token losses over supervised positions / supervised positions in the optimizer step.

Why not the mean per micro-batch (Hugging Face Trainer before 4.46, many scripts)? With gradient
accumulation, a mean per micro-batch weights a token of a short micro-batch more than one of a
long micro-batch, so 4 micro-steps of 1 row differ from 1 step of 4 rows. Here the trainer first
counts the supervised targets of the whole step on every rank (targets are known before any
forward pass), all-reduces that count N, and each micro-step backpropagates
`sum(token losses) / N`. DDP averages gradients over ranks, so the trainer multiplies by the world
size to turn that average back into a sum. Then the update is the same whatever the split into
micro-steps and ranks (tests/test_train_accum.py, tests/test_train_ddp.py).

Targets are already shifted (`data.shift_labels`). Only the supervised positions go through the
LM head (`logits_to_keep` as an index tensor, transformers 5): with a 150k vocabulary the logits of
a 4,096-token row are 2.5 GB in fp32, and prompt positions are often half of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sftdata.tokens import IGNORE_INDEX


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of cross-entropy over positions whose target is not -100, computed in fp32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def kept_positions(targets: torch.Tensor) -> torch.Tensor:
    """Sequence positions supervised in at least one row of the batch (1-D, sorted)."""
    return (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)


def forward_loss_sum(model: torch.nn.Module, inputs: dict, targets: torch.Tensor,
                     keep_logits: bool = True) -> torch.Tensor:
    """Run the model and return the summed token loss (a 0-d tensor that carries the graph).

    Args:
        model: a causal LM taking `logits_to_keep`; `keep_logits=False` computes every position.
        inputs: from `attention.model_inputs`.
        targets: shifted labels shaped like the model's token output.
        keep_logits: compute logits only at supervised positions.
    """
    if keep_logits:
        keep = kept_positions(targets)
        out = model(**inputs, logits_to_keep=keep, use_cache=False)
        return token_loss_sum(out.logits, targets[:, keep])
    out = model(**inputs, use_cache=False)
    return token_loss_sum(out.logits, targets)
