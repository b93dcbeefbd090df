"""The frozen MiniLM text tower (the pretrained all-MiniLM-L6-v2 that the encoders use), as transformers objects.

The generator conditions on its per-token last hidden states (384-d), with the attention mask; the empty prompt's
states are the unconditional input of classifier-free guidance.
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CONTEXT_LENGTH = 32  # same as the encoders' open_clip text config


def load_minilm(context_length: int = CONTEXT_LENGTH):
    """(BertModel, BertTokenizerFast) of the local all-MiniLM-L6-v2, frozen and in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    from ..encoders.registry import minilm_dir

    path = str(minilm_dir())
    tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=context_length)
    model = AutoModel.from_pretrained(path).eval().requires_grad_(False)
    return model, tokenizer


@torch.no_grad()
def encode_prompts(
    text_encoder, tokenizer, prompts: list[str], batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token states (n, L, d) float32, attention mask (n, L) bool) with L = the tokenizer's model_max_length."""
    states, masks = [], []
    device = next(text_encoder.parameters()).device
    for i in range(0, len(prompts), batch_size):
        batch = tokenizer(
            list(prompts[i : i + batch_size]),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        out = text_encoder(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device))
        states.append(out[0].float().cpu())
        masks.append(batch.attention_mask.bool())
    return torch.cat(states), torch.cat(masks)
