"""One training signal everywhere: the same two packed rows give the same loss (1e-5) in four places.

TRL SFTTrainer on `sftdata.hf.dataset(DIR)`, transformers.Trainer + `Collator`, a plain PyTorch loop +
`Collator`, and `sftdata train`'s own loss function; same shards, same seeded fp32 tiny Llama on CPU.
Then TRL and Trainer each train a few steps with a finite, falling loss.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hf_support import prepare_example, tiny_model, tokenizer

import sftdata.hf
from sftdata.train.attention import flat_targets, model_inputs
from sftdata.train.data import ShardSet, collate
from sftdata.train.loss import forward_loss_sum

trl = pytest.importorskip("trl", reason="trl is in the dev extra (pip install -e '.[dev]')")

ROWS = [0, 1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return prepare_example(tmp_path_factory.mktemp("hf") / "shards")


def sftdata_loss(folder, attn: str = "sdpa") -> float:
    """`sftdata train`'s loss for the batch: summed token loss / supervised tokens (its own collate and inputs)."""
    shard_set = ShardSet(folder)
    batch = collate([shard_set[i] for i in ROWS])
    targets = torch.from_numpy(flat_targets(batch, attn))
    with torch.no_grad():
        total = forward_loss_sum(tiny_model(attn), model_inputs(batch, attn, torch.device("cpu")), targets)
    return total.item() / batch.supervised


def plain_loss(folder) -> float:
    """A plain PyTorch loop: DataLoader + Collator, `model(**batch).loss`."""
    loader = torch.utils.data.DataLoader(sftdata.hf.dataset(folder).select(ROWS), batch_size=2,
                                         collate_fn=sftdata.hf.Collator())
    batch = next(iter(loader))
    model = tiny_model()
    sftdata.hf.guard(model)  # silent: this setup isolates
    with torch.no_grad():
        return model(**batch).loss.item()


def common_args() -> dict:
    return {"per_device_train_batch_size": 2, "max_steps": 1, "logging_steps": 1, "learning_rate": 1e-3,
            "train_sampling_strategy": "sequential", "report_to": [], "use_cpu": True, "bf16": False,
            "save_strategy": "no", "seed": 0, "disable_tqdm": True}


def trainer_loss(folder, tmp_path) -> float:
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "hf"), remove_unused_columns=False, **common_args())
    trainer = Trainer(model=tiny_model(), args=args, train_dataset=sftdata.hf.dataset(folder).select(ROWS),
                      data_collator=sftdata.hf.Collator(), callbacks=[sftdata.hf.IsolationCheck()])
    trainer.train()
    return trainer.state.log_history[0]["loss"]


def trl_trainer(folder, tmp_path, model, **overrides):
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path / "trl"), padding_free=True, packing=False, max_length=None,
                     **{**common_args(), **overrides})
    return SFTTrainer(model=model, args=args, train_dataset=sftdata.hf.dataset(folder).select(ROWS)
                      if "max_steps" not in overrides else sftdata.hf.dataset(folder),
                      processing_class=tokenizer(), callbacks=[sftdata.hf.IsolationCheck()])


def test_same_loss_in_trl_trainer_plain_pytorch_and_sftdata_train(folder, tmp_path):
    reference = sftdata_loss(folder)
    assert 6.0 < reference < 8.0  # a random model over 1,028 tokens: about ln(1028) = 6.9
    with warnings.catch_warnings():
        warnings.simplefilter("error", sftdata.hf.IsolationWarning)  # every setup here isolates
        trainer = trl_trainer(folder, tmp_path, tiny_model())
        trainer.train()
        losses = {"trl": trainer.state.log_history[0]["loss"], "trainer": trainer_loss(folder, tmp_path),
                  "plain": plain_loss(folder)}
    for name, loss in losses.items():
        assert loss == pytest.approx(reference, abs=1e-5), (name, loss, reference)


def test_trl_takes_the_rows_as_they_are(folder, tmp_path):
    """No re-tokenizing, no re-packing: TRL's train set is our dataset; its batch holds our ids and labels."""
    ds = sftdata.hf.dataset(folder)
    trainer = trl_trainer(folder, tmp_path, tiny_model(), max_steps=2)
    assert trainer.train_dataset._fingerprint == ds._fingerprint and len(trainer.train_dataset) == len(ds)
    rows = [ds[i] for i in ROWS]
    batch = trainer.data_collator([{k: r[k] for k in ("input_ids", "labels", "seq_lengths")} for r in rows])
    assert batch["input_ids"][0].tolist() == rows[0]["input_ids"] + rows[1]["input_ids"]
    assert batch["labels"][0].tolist() == rows[0]["labels"] + rows[1]["labels"]
    lens = rows[0]["doc_lens"] + rows[1]["doc_lens"]
    assert batch["position_ids"][0].tolist() == [p for n in lens for p in range(n)]
    ours = sftdata.hf.Collator()(rows)
    for key in ("input_ids", "labels", "position_ids", "cu_seq_lens_q"):
        assert torch.equal(batch[key], ours[key]), key


@pytest.mark.slow  # 12 steps with TRL and 12 with Trainer: ~20 s on 2 idle cores, ~2 min when shared
def test_trl_and_trainer_train_with_a_finite_falling_loss(folder, tmp_path):
    from transformers import Trainer, TrainingArguments

    steps = {"max_steps": 12, "learning_rate": 3e-3, "train_sampling_strategy": "random"}
    trl_run = trl_trainer(folder, tmp_path, tiny_model(), **steps)
    trl_run.train()
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), remove_unused_columns=False,
                             **{**common_args(), **steps})
    hf_run = Trainer(model=tiny_model(), args=args, train_dataset=sftdata.hf.dataset(folder),
                     data_collator=sftdata.hf.Collator())
    hf_run.train()
    for run in (trl_run, hf_run):
        losses = [x["loss"] for x in run.state.log_history if "loss" in x]
        assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
