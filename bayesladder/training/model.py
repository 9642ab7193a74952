"""A transformers causal LM (Llama or OLMo-2 class) built from a ladder size; N counted as in ladder.json."""

from __future__ import annotations

from bayesladder.training.spec import LadderSpec, SizeSpec


def config_for(size: SizeSpec, spec: LadderSpec):
    from transformers import LlamaConfig, Olmo2Config

    common = {
        "vocab_size": spec.vocab_size,
        "hidden_size": size.d_model,
        "intermediate_size": size.mlp_hidden,
        "num_hidden_layers": size.n_layers,
        "num_attention_heads": size.n_heads,
        "num_key_value_heads": size.n_kv_heads or size.n_heads,
        "max_position_embeddings": spec.seq_len,
        "tie_word_embeddings": False,
        "use_cache": False,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        "initializer_range": 0.02,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    }
    if spec.architecture == "olmo2":
        return Olmo2Config(**common, rms_norm_eps=1e-6)
    return LlamaConfig(**common, rms_norm_eps=1e-6)


def build(size: SizeSpec, spec: LadderSpec, device: str = "cpu"):
    from transformers import AutoModelForCausalLM

    config = config_for(size, spec)
    model = AutoModelForCausalLM.from_config(config)
    return model.to(device)


def count_n(model) -> int:
    """Parameters of the blocks, all norms and the input embedding; not the untied output projection."""
    out = model.get_output_embeddings().weight
    return sum(p.numel() for p in model.parameters() if p is not out)
