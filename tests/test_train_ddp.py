"""2 CPU ranks (torchrun, gloo) give the same update as 1 rank with the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train_support import random_rows, write_shards

from sftdata.train import TrainConfig, train
from sftdata.train.loop import Trainer

SCRIPT = """
import json, sys, torch
import torch.distributed as dist
from sftdata.train import TrainConfig
from sftdata.train.loop import Trainer
cfg = TrainConfig.model_validate_json(sys.argv[1])
t = Trainer(cfg)
loss, tokens, supervised, _ = t.accumulate(0)
if t.d.rank == 0:
    torch.save({n: p.grad for n, p in t.hf_model.named_parameters()}, sys.argv[2] + "/grads.pt")
t.optimizer.zero_grad(set_to_none=True)
result = t.run()
if t.d.rank == 0:
    json.dump({"loss0": loss, "tokens": tokens, "supervised": supervised, "losses": result.losses},
              open(sys.argv[2] + "/result.json", "w"))
dist.destroy_process_group()
"""


def config(shards: Path, out: Path, grad_accum: int) -> TrainConfig:
    return TrainConfig(shards=shards, out=out, model_from_config="tiny-llama", lr=1e-3, micro_batch_size=1,
                       grad_accum=grad_accum, max_steps=3, warmup_steps=0, progress=False, save_final=False,
                       log_every=1, seed=1)


def test_two_gloo_ranks_equal_one_rank(tmp_path):
    shards = write_shards(tmp_path / "s", random_rows(7, 12, docs_per_row=(1, 3), doc_len=(4, 40)), 128)
    (tmp_path / "ddp").mkdir()
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(script), config(shards, tmp_path / "ddp", grad_accum=1).model_dump_json(), str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "ddp" / "result.json").read_text())
    two_grads = torch.load(tmp_path / "ddp" / "grads.pt")

    one = Trainer(config(shards, tmp_path / "one", grad_accum=2))  # the same 2 rows per step, one process
    loss0, tokens, supervised, _ = one.accumulate(0)
    assert (tokens, supervised) == (two["tokens"], two["supervised"])
    assert loss0 == pytest.approx(two["loss0"], rel=1e-6)
    for name, p in one.hf_model.named_parameters():
        torch.testing.assert_close(two_grads[name], p.grad, rtol=1e-4, atol=1e-7, msg=name)
    single = train(config(shards, tmp_path / "one", grad_accum=2))
    assert [two["losses"][str(k)] for k in (1, 2, 3)] == pytest.approx([single.losses[k] for k in (1, 2, 3)],
                                                                          rel=1e-5)


RUN = """
import json, os, sys
from sftdata.train import TrainConfig, train
result = train(TrainConfig.model_validate_json(sys.argv[1]))
if os.environ["RANK"] == "0":
    json.dump(result.losses, open(sys.argv[2], "w"))
"""


def torchrun(tmp_path: Path, cfg: TrainConfig, name: str) -> dict[str, float]:
    script = tmp_path / "train_run.py"
    script.write_text(RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    out = tmp_path / f"{name}.json"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), cfg.model_dump_json(), str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow  # three torchrun launches: ~3 min on 2 shared cores
def test_fsdp2_equals_ddp_and_resumes_exactly_from_its_sharded_checkpoint(tmp_path):
    shards = write_shards(tmp_path / "s", random_rows(7, 12), 128)
    base = {"shards": shards, "model_from_config": "tiny-llama", "lr": 1e-3, "max_steps": 4, "save_every": 2,
            "warmup_steps": 0, "progress": False, "log_every": 1, "seed": 1}
    ddp = torchrun(tmp_path, TrainConfig(**base, out=tmp_path / "ddp", parallel="ddp"), "ddp")
    fsdp = torchrun(tmp_path, TrainConfig(**base, out=tmp_path / "fsdp", parallel="fsdp"), "fsdp")
    assert [fsdp[str(k)] for k in range(1, 5)] == pytest.approx([ddp[str(k)] for k in range(1, 5)], rel=1e-6)
    assert (tmp_path / "fsdp" / "checkpoints" / "step-000002" / "dcp").is_dir()
    resumed = torchrun(tmp_path, TrainConfig(**base, out=tmp_path / "fsdp2", parallel="fsdp",
                                             resume=str(tmp_path / "fsdp" / "checkpoints" / "step-000002")), "resumed")
    assert resumed == {"3": fsdp["3"], "4": fsdp["4"]}  # bit-identical after the sharded resume
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "final").config.num_hidden_layers == 2
