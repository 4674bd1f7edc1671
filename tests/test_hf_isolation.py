"""Which attention implementations keep packed documents apart (transformers as installed), and the warning.

For every implementation the README calls isolating and that can run here, each document's loss
inside a packed `Collator` batch equals the document run alone; a setup that would mix documents
warns once, with the fix, and really does mix them (the negative controls).
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from hf_support import prepare_example, tiny_model

import sftdata.hf
from sftdata.hf import isolation
from sftdata.tokens import IGNORE_INDEX


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """Two packed rows (several documents each) of the bundled example."""
    ds = sftdata.hf.dataset(prepare_example(tmp_path_factory.mktemp("iso") / "shards"))
    picked = [ds[i] for i in range(len(ds)) if len(ds[i]["doc_lens"]) >= 3][:2]
    assert len(picked) == 2
    return picked


@pytest.fixture(autouse=True)
def fresh_warnings():
    isolation._WARNED.clear()
    yield
    isolation._WARNED.clear()


def token_losses(model, batch: dict) -> torch.Tensor:
    """Per-position loss (B, L) of `model(**batch)`, position i scored on token i+1 (0 where no target)."""
    logits = model(**batch).logits.float()
    targets = torch.full_like(batch["labels"], IGNORE_INDEX)
    targets[:, :-1] = batch["labels"][:, 1:]
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")


def per_document(losses: torch.Tensor, lens: list[int]) -> list[torch.Tensor]:
    flat = losses.reshape(-1)
    out, start = [], 0
    for n in lens:
        out.append(flat[start:start + n].sum())
        start += n
    return out


def alone(model, rows) -> list[torch.Tensor]:
    """Each document of `rows` run alone, as a one-document row."""
    out = []
    for row in rows:
        start = 0
        for n in row["doc_lens"]:
            doc = {"input_ids": row["input_ids"][start:start + n], "labels": row["labels"][start:start + n],
                   "doc_lens": [n]}
            out.append(token_losses(model, sftdata.hf.Collator()([doc])).sum())
            start += n
    return out


def runnable(attn: str) -> str | None:
    """Why `attn` cannot run on this machine, or None."""
    if attn.startswith("flash_attention"):
        if not torch.cuda.is_available():
            return f"{attn} needs a CUDA GPU (none here); isolation by cu_seq_lens is read from transformers' code"
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            return "flash-attn is not installed"
    return None


def readme_isolating() -> list[str]:
    """The attention implementations the README's table marks as isolating."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Train with TRL / transformers / PyTorch", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\w+)` \| yes", section, flags=re.M)


def test_readme_table_is_the_rule_the_code_applies():
    assert sorted(readme_isolating()) == sorted(isolation.ISOLATING)


@pytest.mark.parametrize("attn", [pytest.param(a, marks=pytest.mark.slow) if a == "flex_attention" else a
                                  for a in isolation.ISOLATING])  # flex: ~30 s compiling its CPU mask
def test_each_document_in_a_packed_batch_equals_the_document_alone(attn, rows):
    if (reason := runnable(attn)) is not None:
        pytest.skip(reason)
    model = tiny_model(attn)
    batch = sftdata.hf.Collator()(rows)
    assert isolation.check(model, batch) is None
    lens = [n for row in rows for n in row["doc_lens"]]
    # flex_attention has no backward on CPU in torch 2.13: forward only there
    grad = not (attn == "flex_attention" and not torch.cuda.is_available())
    with torch.set_grad_enabled(grad):
        packed = per_document(token_losses(model, batch), lens)
        single = alone(model, rows)
    assert len(packed) == len(single) == len(lens) >= 6
    for k, (p, s) in enumerate(zip(packed, single, strict=True)):
        torch.testing.assert_close(p, s, rtol=1e-5, atol=1e-5, msg=f"{attn}: document {k}")
    if grad:  # and the gradients of the whole batch equal those of the documents alone
        torch.stack(packed).sum().backward()
        g_packed = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()
        torch.stack(alone(model, rows)).sum().backward()
        for n, p in model.named_parameters():
            torch.testing.assert_close(g_packed[n], p.grad, rtol=1e-4, atol=1e-4, msg=n)  # grads ~30: sums over tokens


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padded_layout_is_one_document_per_row_and_equals_alone(attn, rows):
    model = tiny_model(attn)
    batch = sftdata.hf.Collator(padding_free=False, pad_to_multiple_of=8)(rows)
    lens = [n for row in rows for n in row["doc_lens"]]
    assert batch["input_ids"].shape == (len(lens), -(-max(lens) // 8) * 8)
    assert batch["attention_mask"].sum(dim=1).tolist() == lens
    with torch.no_grad():
        losses = token_losses(model, batch)
        single = alone(model, rows)
    for k in range(len(lens)):
        torch.testing.assert_close(losses[k].sum(), single[k], rtol=1e-5, atol=1e-5)
    assert isolation.check(model, batch) is None


def test_a_cache_mixes_documents_and_the_guard_says_so_once(rows):
    """The negative control: `use_cache` left to the config's True in a plain loop crosses documents."""
    model = tiny_model("sdpa")
    assert model.config.use_cache is True
    batch = sftdata.hf.Collator()(rows)
    batch.pop("use_cache")  # what a hand-made batch looks like
    with torch.no_grad():
        mixed = per_document(token_losses(model, batch), [n for r in rows for n in r["doc_lens"]])
        single = alone(model, rows)
    assert max(abs(m - s).item() for m, s in zip(mixed[1:], single[1:], strict=True)) > 1e-2  # really mixed
    sftdata.hf.guard(model)
    sftdata.hf.guard(model)
    with pytest.warns(sftdata.hf.IsolationWarning, match=r"KV cache.*use_cache=False") as record:
        with torch.no_grad():
            model(**batch)
            model(**batch)
    assert len([w for w in record if w.category is sftdata.hf.IsolationWarning]) == 1


def test_a_2d_attention_mask_on_packed_rows_is_named(rows):
    batch = sftdata.hf.Collator()(rows)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    for attn in isolation.ISOLATING:
        assert re.search(r"2-D attention_mask.*padding_free=True", isolation.problem(attn, batch, use_cache=False))


def test_flash_without_cu_seq_lens_on_several_rows_is_named():
    pos = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]])
    inputs = {"input_ids": torch.zeros_like(pos), "position_ids": pos}
    assert "no cu_seq_lens" in isolation.problem("flash_attention_2", inputs, use_cache=False)
    assert isolation.problem("flash_attention_2", {**inputs, "position_ids": pos[:1]}, use_cache=False) is None
    assert isolation.problem("sdpa", inputs, use_cache=False) is None
    assert "not known to keep packed documents apart" in isolation.problem("paged_attention", inputs, use_cache=False)


def test_unpacked_rows_without_positions_are_fine_packed_ones_are_not():
    inputs = {"input_ids": torch.zeros(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5)}
    assert isolation.problem("sdpa", inputs, use_cache=False, packed=False) is None
    assert "without position_ids" in isolation.problem("sdpa", inputs, use_cache=False, packed=True)


def test_trl_without_padding_free_warns_through_the_callback(tmp_path, rows):
    """TRL with `padding_free=False` gives packed rows an all-ones mask and no positions: the callback warns."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from hf_support import tokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp_path), padding_free=False, packing=False, max_length=None, max_steps=1,
                     per_device_train_batch_size=2, report_to=[], use_cpu=True, bf16=False, save_strategy="no",
                     disable_tqdm=True)
    data = Dataset.from_list([{k: r[k] for k in ("input_ids", "labels", "seq_lengths")} for r in rows])
    trainer = SFTTrainer(model=tiny_model(), args=args, train_dataset=data, processing_class=tokenizer(),
                         callbacks=[sftdata.hf.IsolationCheck()])
    with pytest.warns(sftdata.hf.IsolationWarning, match=r"without position_ids.*padding_free=True"):
        trainer.train()


def test_warn_once_per_message():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):
            isolation.warn_once("documents mix: fix it")
    assert len(record) == 1
