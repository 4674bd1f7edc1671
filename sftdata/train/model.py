"""Building the model and tokenizer, and counting FLOPs for MFU.

A run starts from pretrained weights (`model`: folder or hub id) or from a random init
(`model_from_config`: a named tiny preset for tests, or a config JSON such as a Qwen2.5-0.5B
config for throughput benchmarks). Weights are fp32 (master copy); bf16 happens in autocast.

MFU counts the useful FLOPs of a step: 6 x (non-embedding parameters) per real token for the
matmuls, plus causal attention per *document* (6 x layers x heads*head_dim x n^2 for a document
of n tokens: 2n^2d forward for QK^T and AV with the causal half, x3 for backward). Padding and
cross-document attention are not useful work and are not counted, so an implementation that
attends across documents gets no credit for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sftdata.errors import ConfigError

TINY_PRESETS: dict[str, dict[str, Any]] = {
    "tiny-llama": {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
                   "tie_word_embeddings": True},
    "tiny-qwen2": {"model_type": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096},
}
"""Random-init presets for tests; `vocab_size` comes from the tokenizer / shards."""

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10G": 125.0, "4090": 165.0, "B200": 2250.0, "GH200": 989.0, "MI300X": 1307.0}
"""Dense bf16 peak per GPU (vendor sheets, without sparsity); matched as a substring of the device name."""


def model_config_dict(spec: str, vocab_size: int) -> dict[str, Any]:
    """Config kwargs for a tiny preset name or a config JSON file (vocab enlarged to fit the data)."""
    if spec in TINY_PRESETS:
        cfg = dict(TINY_PRESETS[spec])
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"model_from_config: {spec!r} is neither a preset ({', '.join(TINY_PRESETS)}) "
                              "nor an existing config JSON file")
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if "model_type" not in cfg:
            raise ConfigError(f"{path}: a model config JSON needs `model_type` (e.g. \"llama\", \"qwen2\")")
    cfg["vocab_size"] = max(int(cfg.get("vocab_size", 0)), vocab_size)
    return cfg


def build_model(model: str | None, model_from_config: str | None, *, vocab_size: int, attn: str,
                seed: int) -> torch.nn.Module:
    """An fp32 `AutoModelForCausalLM` from weights or from a config (seeded random init)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if model is not None:
        try:
            loaded = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, attn_implementation=attn)
        except OSError as err:
            raise ConfigError(f"model: cannot load {model!r} ({err}); pass a local model folder or a hub id") from err
        return loaded
    cfg = model_config_dict(model_from_config, vocab_size)
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    config = AutoConfig.for_model(model_type, **cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)


def load_tokenizer(candidates: list[str | None]):
    """The first tokenizer that loads from `candidates` (None when none does: the model is saved without one)."""
    from transformers import AutoTokenizer

    for path in candidates:
        if path is None:
            continue
        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError):
            continue
    return None


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that do matmul work per token (all but the input embedding lookup)."""
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is embed
    return total if tied else total - embed.numel()


def step_flops(model: torch.nn.Module, tokens: int, doc_lens: list[int]) -> float:
    """Useful training FLOPs (forward + backward) for `tokens` tokens in documents of `doc_lens`."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    heads_dim = cfg.num_attention_heads * head_dim
    attention = 6.0 * cfg.num_hidden_layers * heads_dim * sum(n * n for n in doc_lens)
    return 6.0 * matmul_params(model) * tokens + attention


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    """Peak bf16 FLOP/s of one device, or None on CPU / unknown GPUs (then no MFU is reported)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return tflops * 1e12
    return None
