"""The prompt side of the pixel reward model: frozen pretrained MiniLM token states, computed once per prompt.

``PromptStates`` is the torch module the exporter turns into the repository's ``prompt_encoder`` graph (token ids
in, last hidden states and the padding mask out), so training and serving read the same states. Tokenization is
``rewarddance.scoring.tokenizer.PromptTokenizer`` from MiniLM's own tokenizer.json in both places.

``build_cache`` writes ``DATA/prompt_states/<name>/``: ``tokens.npy`` (p, L, 384) float16, ``mask.npy`` (p, L) bool
and ``meta.json``, in prompts.parquet order, memory-mapped and filled batch by batch (an interrupted run resumes).
``edited=True`` writes the same for each prompt with one colour, shape or position changed (``edits.py``) into
``DATA/prompt_states/minilm-l6-edited/`` (plus ``edits.parquet``: the edited text and the kind of edit), the hard
negatives of the edited-prompt term.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from numpy.lib.format import open_memmap
from torch import nn
from tqdm import tqdm

from rewarddance.scoring.tokenizer import PromptTokenizer

from ..data import schema
from ..encoders.registry import minilm_dir

CONTEXT_LENGTH = 32
TOKENIZER_FILE = "tokenizer.json"
CACHE_NAME = "minilm-l6"
EDITED_SUFFIX = "-edited"
EDITS_VERSION = 1  # bump when edits.py changes what it writes, so stale caches are rebuilt


class PromptStates(nn.Module):
    """Token ids (n, L) int64 -> (MiniLM last hidden states (n, L, 384), mask (n, L) bool)."""

    def __init__(self, model_dir: Path | None = None) -> None:
        super().__init__()
        from transformers import AutoModel

        self.model_dir = Path(model_dir or minilm_dir())
        self.bert = AutoModel.from_pretrained(self.model_dir, local_files_only=True).float().eval()
        self.pad_token_id = int(self.bert.config.pad_token_id or 0)
        for p in self.bert.parameters():
            p.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = input_ids != self.pad_token_id
        states = self.bert(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        return states, mask

    def tokenizer(self, context_length: int = CONTEXT_LENGTH) -> PromptTokenizer:
        return PromptTokenizer(self.model_dir / TOKENIZER_FILE, context_length, self.pad_token_id)

    @torch.no_grad()
    def encode(self, texts: list[str], context_length: int = CONTEXT_LENGTH) -> tuple[np.ndarray, np.ndarray]:
        ids = torch.from_numpy(self.tokenizer(context_length)(texts))
        states, mask = self(ids)
        return states.numpy(), mask.numpy()


def cache_dir(data: Path, edited: bool = False) -> Path:
    return data / "prompt_states" / (CACHE_NAME + (EDITED_SUFFIX if edited else ""))


def build_cache(data: Path, batch: int = 256, progress: bool = True, edited: bool = False) -> Path:
    """Prompt states of every prompt of ``data`` (skipped when complete for the same prompts table); ``edited``:
    of each prompt's one-attribute edit instead."""
    layout = schema.Layout(data)
    texts = pd.read_parquet(layout.table("prompts"), columns=["text"]).text.tolist()
    out = cache_dir(data, edited)
    out.mkdir(parents=True, exist_ok=True)
    identity = {"prompts_sha256": schema.sha256_file(layout.table("prompts")), "context_length": CONTEXT_LENGTH}
    if edited:
        from .edits import edited_texts

        texts, kinds = edited_texts(texts)
        identity["edits_version"] = EDITS_VERSION
        pd.DataFrame({"text": texts, "kind": kinds}).to_parquet(out / "edits.parquet", index=False)
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("identity") == identity and meta.get("done") == len(texts):
        return out
    encoder = PromptStates()
    width = encoder.bert.config.hidden_size
    resume = meta.get("identity") == identity and (out / "tokens.npy").exists()
    mode = "r+" if resume else "w+"
    tokens = open_memmap(out / "tokens.npy", mode, np.float16, (len(texts), CONTEXT_LENGTH, width))
    mask = open_memmap(out / "mask.npy", mode, bool, (len(texts), CONTEXT_LENGTH))
    done = meta.get("done", 0) if resume else 0
    desc = "edited prompt states" if edited else "prompt states"
    for start in tqdm(range(done, len(texts), batch), desc=desc, disable=not progress):
        states, m = encoder.encode(texts[start : start + batch])
        tokens[start : start + len(m)], mask[start : start + len(m)] = states, m
        tokens.flush()
        mask.flush()
        meta = {"identity": identity, "done": start + len(m), "model": str(encoder.model_dir), "width": width}
        meta_path.write_text(json.dumps(meta))
    return out


def load_cache(data: Path, edited: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, mask) memory-mapped; raises when the cache is missing or stale."""
    out = cache_dir(data, edited)
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
    n = len(pd.read_parquet(schema.Layout(data).table("prompts"), columns=["prompt_id"]))
    stale = edited and meta.get("identity", {}).get("edits_version") != EDITS_VERSION
    if meta.get("done") != n or stale:
        flag = " --edited" if edited else ""
        raise ValueError(f"no complete prompt-state cache in {out}; run `rewarddance data prompt-states {data}{flag}`")
    return np.load(out / "tokens.npy", mmap_mode="r"), np.load(out / "mask.npy", mmap_mode="r")
