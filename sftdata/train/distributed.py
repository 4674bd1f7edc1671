"""Ranks, devices and model wrapping for one process or `torchrun` (DDP, or FSDP2 for large models).

Under torchrun (`WORLD_SIZE` > 1) the process group is NCCL on GPUs and gloo on CPU (the CPU path
is what the equality test runs: 2 gloo ranks == 1 rank). DDP is built with
`broadcast_buffers=False` (the only buffers of a causal LM are RoPE tables, equal on every rank) so
that forward passes hold no collectives. FSDP2 (`fully_shard`) shards each decoder layer, then the
root; its gradient reduction averages over ranks exactly like DDP, so the loss scaling in
`loss.py` holds for both.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sftdata.train.config import Parallel


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device_pref: str | None) -> Dist:
    """Read torchrun's environment, pick the device, start the process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    kind = device_pref or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(kind, local_rank) if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (float64; exact for counts below 2**53)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated transformer blocks (`model.model.layers` for HF decoder-only models)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    return list(layers) if layers is not None else []


def wrap(model: torch.nn.Module, d: Dist, parallel: Parallel, bf16: bool) -> torch.nn.Module:
    """DDP when world > 1; FSDP2 when asked (needs torchrun, even for one rank)."""
    if parallel == Parallel.fsdp:
        if not dist.is_initialized():
            from sftdata.errors import ConfigError

            raise ConfigError("parallel: fsdp shards the model over ranks; launch with torchrun "
                              "(e.g. `torchrun --nproc-per-node 8 -m sftdata train ...`), or use parallel: ddp")
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for layer in decoder_layers(model):
            fully_shard(layer, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    if d.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [d.device.index] if d.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def no_sync(model: torch.nn.Module, last_micro_step: bool) -> AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-step of an optimizer step."""
    if last_micro_step:
        return nullcontext()
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        return _FsdpNoSync(model)
    return nullcontext()


class _FsdpNoSync(AbstractContextManager):
    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.model.set_requires_gradient_sync(False)

    def __exit__(self, *exc: object) -> None:
        self.model.set_requires_gradient_sync(True)
