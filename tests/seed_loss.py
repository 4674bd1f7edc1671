"""The seed document's `calculate_sft_loss` (../shared/seed/000_fdabca6020f221ee.txt), the reference
that both the mask engine's labels and the trainer's loss are checked against."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def calculate_sft_loss(logits, labels, prompt_lengths):
    """Copied from the seed document ../shared/seed/000_fdabca6020f221ee.txt (comments translated)."""
    batch_size, sequence_length, vocab_size = logits.shape
    # shift logits and labels for next-token prediction: logits predicting token i are at index i-1
    shift_logits = logits[..., :-1, :].contiguous()
    shift_labels = labels[..., 1:].contiguous()
    # loss mask, initialised to 1 (compute loss)
    loss_mask = torch.ones_like(shift_labels, dtype=torch.bool)
    # set the mask of prompt tokens to 0 (ignore)
    for i in range(batch_size):
        # the prompt length includes the first token, so in the shifted sequence mask up to prompt_length - 1
        prompt_end_index = prompt_lengths[i] - 1
        if prompt_end_index > 0:
            loss_mask[i, :prompt_end_index] = 0
    masked_labels = shift_labels.masked_fill(~loss_mask, IGNORE_INDEX)
    shift_logits = shift_logits.view(-1, vocab_size)
    masked_labels = masked_labels.view(-1)
    loss = F.cross_entropy(shift_logits, masked_labels, ignore_index=IGNORE_INDEX)
    return loss
