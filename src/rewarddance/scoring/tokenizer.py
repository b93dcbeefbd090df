"""Prompt tokenization with the ``tokenizers`` library from the tokenizer.json saved in the repository.

It reproduces open_clip's HFTokenizer as the encoders were trained with it: whitespace-collapse the text, then
WordPiece with [CLS]/[SEP], truncated and padded to ``context_length``. A test checks ids against open_clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def clean_whitespace(text: str) -> str:
    return " ".join(text.split()).strip()


class PromptTokenizer:
    def __init__(self, path: str | Path, context_length: int, pad_token_id: int = 0) -> None:
        from tokenizers import Tokenizer

        self.context_length = int(context_length)
        self.pad_token_id = int(pad_token_id)
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.enable_truncation(max_length=self.context_length)
        pad_token = self._tokenizer.id_to_token(self.pad_token_id) or "[PAD]"
        self._tokenizer.enable_padding(length=self.context_length, pad_id=self.pad_token_id, pad_token=pad_token)
        self._counter = Tokenizer.from_file(str(path))  # no truncation or padding: counts what a prompt needs
        self._counter.no_truncation()
        self._counter.no_padding()

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(n, context_length) int64 token ids."""
        encodings = self._tokenizer.encode_batch([clean_whitespace(t) for t in texts])
        return np.asarray([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), self.context_length)

    def token_count(self, text: str) -> int:
        """Tokens the text needs, specials included, before truncation (longer prompts lose their tail)."""
        return len(self._counter.encode(clean_whitespace(text)).ids)
