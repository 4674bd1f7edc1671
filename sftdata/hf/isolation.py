"""Do the documents of a packed batch stay apart in `model(**batch)`? The rule, per attention path, and a warning.

What transformers 5.24 does with a packed batch (read in `masking_utils.py` and
`modeling_flash_attention_utils.py`; sdpa and eager run in tests/test_hf_isolation.py, flex_attention
forward only: torch 2.13 has no flex backward on CPU; flash_attention_2 not run, no GPU here):

- `sdpa`, `eager`, `flex_attention`: isolated when the batch has restarting `position_ids`, *no*
  `attention_mask` and the model holds no KV cache. `create_causal_mask` then finds the documents
  from the positions (`find_packed_sequence_indices`: a new document wherever the position does not
  go up by 1) and ANDs a same-document mask into the causal one. A 2-D `attention_mask` switches that
  detection off (documents of a row see each other); so does a cache, and a forward pass creates one
  whenever `use_cache` is true, which is the default of most pretrained configs. `Trainer` and TRL
  set `config.use_cache = args.use_cache` (False by default); a plain loop must pass
  `use_cache=False`, which `Collator` batches carry.
- `flash_attention_2` / `_3`: isolated when the batch carries `cu_seq_lens_q/k` + `max_length_q/k`
  (varlen kernel over the given boundaries: `Collator` and TRL's padding-free collator both send
  them), or when it is one `(1, T)` row with restarting positions (boundaries derived from them).
  Several rows with restarting positions but no `cu_seq_lens` run the dense kernel per row: not
  isolated. With a 2-D `attention_mask` the kernel unpads by the mask, rows stay whole: not isolated.
- anything else (custom kernels, remote-code models that build their own mask): not known; only the
  padded layout (one document per row, `Collator(padding_free=False)`) is safe.

`problem(...)` applies these rules to the batch a model actually receives; `guard(model)` checks the
first forward pass and warns once, with the fix; `IsolationCheck` does that from a `Trainer` (TRL's
too). Nothing here changes a batch: a warning, never a silent fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

ISOLATING = ("flash_attention_2", "flash_attention_3", "sdpa", "eager", "flex_attention")
"""Attention implementations that keep packed documents apart, given the inputs described above."""

MASK_FROM_POSITIONS = ("sdpa", "eager", "flex_attention")
"""Those that build the block-diagonal mask from restarting `position_ids` (no 2-D mask, no cache)."""

FIX_LAYOUT = ("TRL: SFTConfig(padding_free=True, packing=False, max_length=None); transformers.Trainer or "
              "a DataLoader: data_collator=sftdata.hf.Collator()")


class IsolationWarning(UserWarning):
    """Documents packed in one row would attend to each other in this setup."""


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Warn with `IsolationWarning` the first time `message` comes up in this process."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, IsolationWarning, stacklevel=3)


def _restarts(position_ids: torch.Tensor) -> bool:
    """True when some row's positions go down or jump (a new document starts inside the row)."""
    if position_ids.shape[-1] < 2:
        return False
    return bool((position_ids.diff(dim=-1) != 1).any())


def problem(attn: str, inputs: Mapping[str, Any], *, use_cache: bool, packed: bool = True) -> str | None:
    """Why documents would see each other in `model(**inputs)`, with the fix; None when they stay apart.

    Args:
        attn: the model's attention implementation (`model.config._attn_implementation`).
        inputs: the keyword arguments the model is called with.
        use_cache: whether the forward pass will hold a KV cache (the call's `use_cache`, else the config's).
        packed: whether rows of the data hold several documents (False for a `--no-pack` folder).
    """
    positions = inputs.get("position_ids")
    mask = inputs.get("attention_mask")
    restart = isinstance(positions, torch.Tensor) and _restarts(positions)
    if not restart:
        if packed and positions is None:
            return ("packed rows reach the model without position_ids, so positions run on across documents and "
                    f"attention crosses them. Fix: {FIX_LAYOUT}")
        return None  # one document per row (padded layout, or unpacked data)
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        return ("packed rows come with a 2-D attention_mask: transformers then ignores the restarting position_ids "
                f"and documents of a row attend to each other ({attn}). Fix: {FIX_LAYOUT} (no attention_mask), or "
                "sftdata.hf.Collator(padding_free=False) for one document per row")
    if isinstance(mask, torch.Tensor) or mask is not None:
        return None  # a 4-D mask or a BlockMask built by the caller (as `sftdata train` does): taken as given
    if attn.startswith("flash_attention"):
        has_cu = all(inputs.get(k) is not None for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
                                                         "max_length_k"))
        if has_cu or positions.shape[0] == 1:
            return None
        return (f"{attn} gets {positions.shape[0]} rows with restarting position_ids but no cu_seq_lens_q/k: it runs "
                f"the dense kernel per row and documents see each other. Fix: {FIX_LAYOUT}")
    if attn in MASK_FROM_POSITIONS:
        if use_cache or inputs.get("past_key_values") is not None or inputs.get("cache") is not None:
            return ("the model runs with a KV cache (use_cache=True), which makes transformers skip the "
                    f"packed-sequence mask: documents attend to each other ({attn}). Fix: pass use_cache=False "
                    "(sftdata.hf.Collator batches carry it) or set model.config.use_cache = False")
        return None
    return (f"attention implementation {attn!r} is not known to keep packed documents apart (isolating: "
            f"{', '.join(ISOLATING)}). Fix: load the model with attn_implementation='sdpa', or use "
            "sftdata.hf.Collator(padding_free=False) for one document per row")


def effective_use_cache(model: torch.nn.Module, inputs: Mapping[str, Any]) -> bool:
    """The `use_cache` a forward pass of `model` will run with (the call's value, else the config's)."""
    value = inputs.get("use_cache")
    if value is None:
        value = getattr(getattr(model, "config", None), "use_cache", False)
    flag = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") \
        else "is_gradient_checkpointing"  # transformers 5.2x renamed it; the old name warns
    if getattr(model, flag, False) and model.training and torch.is_grad_enabled():
        return False  # transformers turns the cache off under activation checkpointing
    return bool(value)


def check(model: torch.nn.Module, inputs: Mapping[str, Any], *, packed: bool = True) -> str | None:
    """`problem` for this model and these inputs (reads the attention path and `use_cache` from the model)."""
    attn = getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"
    return problem(attn, inputs, use_cache=effective_use_cache(model, inputs), packed=packed)


def guard(model: torch.nn.Module, *, packed: bool = True) -> torch.utils.hooks.RemovableHandle:
    """Check the first forward pass of `model` and warn once (`IsolationWarning`) if documents would mix.

    The hook removes itself after that first call: the cost is one look at the first batch.
    """
    handle: torch.utils.hooks.RemovableHandle

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        handle.remove()
        inputs = dict(kwargs)
        if args:
            inputs.setdefault("input_ids", args[0])
        message = check(module, inputs, packed=packed)
        if message is not None:
            warn_once(message)

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    return handle


def _trainer_callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class IsolationCheck(_trainer_callback_base()):
    """A `TrainerCallback` (transformers and TRL): at the start of training, `guard` the model.

    Whether the rows are packed is read from the training set (`seq_lengths` / `doc_lens`); without
    those columns they are assumed packed.
    """

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        from datasets import Dataset

        from sftdata.hf.folder import documents_per_row

        data = getattr(train_dataloader, "dataset", None)
        packed = documents_per_row(data) != 1 if isinstance(data, Dataset) else True
        if model is not None:
            guard(model, packed=packed)
        return control
