"""Checkpoints that resume exactly: model, optimizer, scheduler, RNG of every rank, data position.

Layout: `OUT/checkpoints/step-000040/` holding `model.pt`, `optimizer.pt` (rank 0; DDP replicas are
identical) or `dcp/` (FSDP2: torch.distributed.checkpoint, each rank writes its shards),
`scheduler.pt`, `rng-<rank>.pt` and `state.json` (step, tokens seen, the config). The data
position is the step number, because which rows a step reads is a pure function of
(seed, step, rank) (`data.step_rows`). A checkpoint is written into `step-N.incomplete/` and renamed
when every rank has finished, so a folder named `step-N` is always complete; `latest` picks the
highest complete one. Only the last `keep` are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sftdata.errors import InputError

CHECKPOINTS = "checkpoints"


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict[str, Any], *, rank: int, sharded: bool, keep: int) -> Path:
    """Write `OUT/checkpoints/step-N` (collective: every rank must call it)."""
    final = out / CHECKPOINTS / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".incomplete")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    if sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(tmp / "dcp"))
    elif rank == 0:
        torch.save(model.state_dict(), tmp / "model.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / f"rng-{rank}.pt")
    if rank == 0:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2, default=str) + "\n")
    _barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted((out / CHECKPOINTS).glob("step-??????"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def find_checkpoint(out: Path, resume: str) -> Path:
    """`latest` -> the newest complete checkpoint under OUT/checkpoints; else the folder given."""
    if resume == "latest":
        found = sorted((out / CHECKPOINTS).glob("step-??????"))
        if not found:
            raise InputError(f"resume=latest: no checkpoint under {out / CHECKPOINTS}; run with --save-every first")
        return found[-1]
    path = Path(resume)
    if not (path / "state.json").is_file():
        raise InputError(f"resume: {path} is not a checkpoint folder (no state.json); pass OUT/checkpoints/step-N")
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *,
                    rank: int, sharded: bool) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns state.json (its `step` is the next step to run)."""
    if sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_sd, optim_sd = get_state_dict(model, optimizer)
        loaded = {"model": model_sd, "optimizer": optim_sd}
        dcp.load(loaded, checkpoint_id=str(path / "dcp"))
        set_state_dict(model, optimizer, model_state_dict=loaded["model"], optim_state_dict=loaded["optimizer"])
    else:
        model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng_file = path / f"rng-{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((path / "state.json").read_text())
