"""The loop: loss normalised over the whole step, the seed document's loss, resume, skipped steps, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from seed_loss import calculate_sft_loss
from test_train_support import random_doc, random_rows, write_shards

from sftdata.errors import ConfigError
from sftdata.tokens import IGNORE_INDEX
from sftdata.train import TrainConfig, train
from sftdata.train.config import load_config
from sftdata.train.data import Row, collate
from sftdata.train.loop import Trainer
from sftdata.train.loss import forward_loss_sum, token_loss_sum


def cfg(shards: Path, out: Path, **kw) -> TrainConfig:
    base = {"shards": shards, "out": out, "model_from_config": "tiny-llama", "lr": 1e-3, "progress": False,
            "max_grad_norm": None, "warmup_steps": 0, "save_final": False, "log_every": 1}
    return TrainConfig(**{**base, **kw})


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# -- loss normalisation ----------------------------------------------------------------------

def test_four_micro_steps_of_one_row_equal_one_step_of_four_rows(tmp_path):
    # rows of very different lengths and supervised counts: a per-micro-batch mean would differ
    rows = random_rows(5, 4, docs_per_row=(1, 3), doc_len=(4, 40))
    shards = write_shards(tmp_path / "s", rows, 128)
    accum = Trainer(cfg(shards, tmp_path / "a", micro_batch_size=1, grad_accum=4, shuffle=False))
    whole = Trainer(cfg(shards, tmp_path / "b", micro_batch_size=4, grad_accum=1, shuffle=False))
    loss_a, tok_a, sup_a, _ = accum.accumulate(0)
    loss_b, tok_b, sup_b, _ = whole.accumulate(0)
    assert (tok_a, sup_a) == (tok_b, sup_b) == (sum(len(d[0]) for r in rows for d in r),
                                                sum(int((d[1][1:] != IGNORE_INDEX).sum()) for r in rows for d in r))
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    ga, gb = grads(accum.model), grads(whole.model)
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-7, msg=name)
    # and the AdamW step lands on the same weights; Adam's first step is about lr * sign(grad), so an
    # element whose gradient is within fp32 rounding of 0 may move differently: allow 0.1% of them
    accum.apply()
    whole.apply()
    flat_a = torch.cat([p.detach().flatten() for p in accum.model.parameters()])
    flat_b = torch.cat([p.detach().flatten() for p in whole.model.parameters()])
    assert (flat_a - flat_b).abs().gt(1e-6).float().mean() < 1e-3


def test_mean_of_micro_batch_means_would_differ(tmp_path):
    """The negative control for the test above: the naive per-micro-batch mean is not the step's loss."""
    rows = random_rows(5, 4, docs_per_row=(1, 3), doc_len=(4, 40))
    shards = write_shards(tmp_path / "s", rows, 128)
    t = Trainer(cfg(shards, tmp_path / "a", micro_batch_size=1, grad_accum=4, shuffle=False))
    means = []
    with torch.no_grad():
        for batch in t.micro_batches(0):
            from sftdata.train.attention import model_inputs

            s = forward_loss_sum(t.model, model_inputs(batch, t.attn, t.d.device), torch.from_numpy(batch.targets))
            means.append(s.item() / batch.supervised)
    loss, *_ = t.accumulate(0)
    assert abs(np.mean(means) - loss) > 1e-3


def test_trainer_loss_equals_the_seed_documents_calculate_sft_loss(test_tokenizer):
    """The seed's example `<|prompt|> 马来西亚的首都在哪里?<|response|> 马来西亚的首都是吉隆坡。<|endoftext|>`."""
    from sftdata.train.attention import model_inputs
    from sftdata.train.model import build_model

    prompt = test_tokenizer("<|prompt|> 马来西亚的首都在哪里?", add_special_tokens=False)["input_ids"]
    reply = test_tokenizer("<|response|> 马来西亚的首都是吉隆坡。<|endoftext|>", add_special_tokens=False)["input_ids"]
    ids = np.asarray(prompt + reply, dtype=np.int32)
    labels = np.where(np.arange(len(ids)) < len(prompt), IGNORE_INDEX, ids).astype(np.int32)
    batch = collate([Row(ids, labels, np.array([len(ids)], dtype=np.int32))])
    targets = torch.from_numpy(batch.targets)
    # 1) on the same (random) logits
    logits = torch.randn(1, len(ids), 400, generator=torch.Generator().manual_seed(0))
    seed = calculate_sft_loss(logits, torch.from_numpy(ids[None].astype(np.int64)), torch.tensor([len(prompt)]))
    ours = token_loss_sum(logits, targets) / batch.supervised
    torch.testing.assert_close(ours, seed, rtol=1e-6, atol=1e-6)
    # 2) through a model, with the trainer's LM head only at supervised positions
    model = build_model(None, "tiny-llama", vocab_size=len(test_tokenizer), attn="sdpa", seed=0)
    inputs = model_inputs(batch, "sdpa", torch.device("cpu"))
    with torch.no_grad():
        full_logits = model(**inputs).logits
        labels_t = torch.from_numpy(ids[None].astype(np.int64))
        seed = calculate_sft_loss(full_logits, labels_t, torch.tensor([len(prompt)]))
        ours = forward_loss_sum(model, inputs, targets, keep_logits=True) / batch.supervised
    torch.testing.assert_close(ours.float(), seed, rtol=1e-5, atol=1e-5)
    assert batch.supervised == len(reply)


# -- resume, skipped steps, metrics ------------------------------------------------------------

def test_resume_at_step_k_reproduces_the_later_losses_exactly(tmp_path):
    shards = write_shards(tmp_path / "s", random_rows(6, 24), 128)
    full = train(cfg(shards, tmp_path / "full", max_steps=8, micro_batch_size=2, grad_accum=2, save_every=3,
                     warmup_steps=2, max_grad_norm=1.0))
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    # a new process-like run, in another folder, from the step-3 checkpoint
    resumed = train(cfg(shards, tmp_path / "again", max_steps=8, micro_batch_size=2, grad_accum=2, warmup_steps=2,
                        max_grad_norm=1.0, resume=str(tmp_path / "full" / "checkpoints" / "step-000003")))
    assert list(resumed.losses) == [4, 5, 6, 7, 8]
    assert [resumed.losses[k] for k in range(4, 9)] == [full.losses[k] for k in range(4, 9)]  # bit-identical
    # resume=latest in the same folder: metrics.jsonl keeps steps <= 6 and appends 7, 8 once
    latest = train(cfg(shards, tmp_path / "full", max_steps=8, micro_batch_size=2, grad_accum=2, warmup_steps=2,
                       max_grad_norm=1.0, resume="latest"))
    assert [latest.losses[k] for k in (7, 8)] == [full.losses[7], full.losses[8]]
    steps = [json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def test_step_without_supervised_tokens_is_skipped_with_a_warning(tmp_path):
    rng = np.random.default_rng(0)
    ids, _ = random_doc(rng, 300, 20, 5)
    unsupervised = [[(ids, np.full_like(ids, IGNORE_INDEX))]]
    shards = write_shards(tmp_path / "s", unsupervised + random_rows(1, 1), 64)
    t = Trainer(cfg(shards, tmp_path / "o", max_steps=2, shuffle=False))
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    with pytest.warns(UserWarning, match=r"step 1: no supervised token .* step skipped"):
        result = t.run()
    assert result.losses[1] is None and np.isfinite(result.losses[2])
    lines = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0] == {"step": 1, "split": "train", "loss": None, "skipped": True, "lr": pytest.approx(1e-3)}
    assert {"step", "split", "loss", "lr", "tokens_per_s", "supervised_tokens_per_s", "mfu"} <= set(lines[1])
    changed = [n for n, p in t.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed  # step 2 trained


def test_final_model_and_tokenizer_load_with_transformers(tmp_path, test_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    test_tokenizer.save_pretrained(tmp_path / "tok")
    shards = write_shards(tmp_path / "s", random_rows(2, 4), 128, tokenizer=str(tmp_path / "tok"))
    result = train(cfg(shards, tmp_path / "o", max_steps=1, save_final=True, eval_shards=shards))
    assert set(result.eval_losses) == {0, 1}
    model = AutoModelForCausalLM.from_pretrained(result.final_dir)
    tok = AutoTokenizer.from_pretrained(result.final_dir)
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    out = model.generate(**tok("Hello", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 1


# -- config ------------------------------------------------------------------------------------

def test_config_reports_every_problem_at_once(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("shards: s\nout: o\nlearning_rate: 1e-5\nmicro_batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"(?s)train.yaml.*micro_batch_size: Input should be greater than or "
                                          r"equal to 1.*learning_rate: unknown key \(allowed: .*lr,"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"(?s)command-line flags.*exactly one of `model`"):
        load_config(None, shards="s", out="o")


def test_flags_override_the_yaml(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("shards: s\nout: o\nmodel: m\nlr: 1.0e-5\nmax_steps: 10\n")
    c = load_config(path, lr=3e-4, max_steps=None)
    assert (c.lr, c.max_steps, c.model) == (3e-4, 10, "m")


def test_too_few_rows_for_one_step_is_a_config_error(tmp_path):
    shards = write_shards(tmp_path / "s", random_rows(0, 3), 128)
    with pytest.raises(ConfigError, match=r"3 rows < 4 rows per step.*lower micro_batch_size"):
        Trainer(cfg(shards, tmp_path / "o", micro_batch_size=2, grad_accum=2))


def test_out_of_vocabulary_ids_are_a_config_error(tmp_path):
    from sftdata.train.model import build_model

    build_model(None, "tiny-llama", vocab_size=100, attn="sdpa", seed=0).save_pretrained(tmp_path / "m")
    shards = write_shards(tmp_path / "s", random_rows(0, 2, vocab=300), 128)
    with pytest.raises(ConfigError, match=r"token id \d+ >= the model's vocabulary \(100\).*another tokenizer"):
        Trainer(cfg(shards, tmp_path / "o", model_from_config=None, model=str(tmp_path / "m")))
