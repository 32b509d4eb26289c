"""In-domain CLIP objective: symmetric InfoNCE between frames and their state captions.

Image side: the encoder's CLIP embedding — class token after the final norm → the encoder's own
linear projection (``CLIPEncoder.image_embedding``, ``(B, P)``), so the projection that defines the
embedding is saved with the encoder. Text side (objective only, not saved): the frozen MiniLM
sentence embedding ``(B, 384)`` → a trainable MLP ``384 → hidden → P``. Both are L2-normalised;
logits = ``exp(logit_scale) · img @ txtᵀ`` with a learnable CLIP-style logit scale (initial
temperature 0.07) clamped to ``[1, max_logit_scale]``.

Texts default to the frame's state caption (object and gripper cells, gripper state, then the
instruction), so matching needs the layout, not just the task. Frames of a batch often share a
caption (a static scene, one episode's consecutive frames); treating those pairs as negatives would
push apart images the text cannot tell apart. ``duplicates`` decides:

* ``"mask"`` (default) — off-diagonal pairs whose texts are identical are removed from both
  softmaxes (logit → −∞): they are neither positives nor negatives;
* ``"soft"`` — soft targets: every identical-text pair is a positive, target mass split evenly;
* ``"none"`` — plain CLIP (duplicates are negatives), for ablations.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robrep.encoders.clip import CLIPEncoder
from robrep.encoders.language import LANGUAGE_DIM, embed_sentences
from robrep.pretrain.objective import Objective, register_objective

DUPLICATE_MODES = ("mask", "soft", "none")


def same_text(texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, B)`` bool: ``[i, j]`` is True when ``texts[i] == texts[j]`` (diagonal included)."""
    ids: dict[str, int] = {}
    idx = torch.tensor([ids.setdefault(t, len(ids)) for t in texts], device=device)
    return idx[:, None] == idx[None, :]


def clip_loss(logits: torch.Tensor, texts: Sequence[str], duplicates: str = "mask") -> torch.Tensor:
    """Symmetric InfoNCE on ``logits (B, B)`` (row i = image i, column j = text j; pair i↔i positive),
    with identical ``texts`` handled as ``duplicates`` says (see the module docstring)."""
    if duplicates not in DUPLICATE_MODES:
        raise ValueError(f"duplicates must be one of {DUPLICATE_MODES}, got {duplicates!r}")
    b = logits.shape[0]
    if logits.shape != (b, b) or len(texts) != b:
        raise ValueError(f"logits must be (B, B) with B = len(texts) = {len(texts)}, got {tuple(logits.shape)}")
    same = same_text(texts, logits.device)
    if duplicates == "soft":
        target = same.to(logits.dtype)
        target = target / target.sum(dim=1, keepdim=True)  # symmetric ``same``: rows and columns alike
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    if duplicates == "mask":
        eye = torch.eye(b, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
    labels = torch.arange(b, device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


class ContrastiveObjective(Objective):
    """CLIP-style image–text contrastive pretraining of a :class:`CLIPEncoder`.

    ``text``: batch key of the texts (``"captions"`` or ``"instructions"``); ``text_hidden``: width
    of the text MLP; ``init_temperature``, ``max_logit_scale``: CLIP's temperature init and clamp;
    ``duplicates``: ``"mask"`` | ``"soft"`` | ``"none"``.
    """

    def __init__(
        self,
        encoder: CLIPEncoder,
        text: str = "captions",
        text_hidden: int = 256,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        duplicates: str = "mask",
    ) -> None:
        super().__init__()
        if not isinstance(encoder, CLIPEncoder):
            raise TypeError(f"the clip objective trains a CLIPEncoder, got {type(encoder).__name__}")
        if not encoder.proj_dim:
            raise ValueError("the clip objective needs an encoder with a projection head (proj_dim > 0)")
        if getattr(encoder, "_frozen", False):
            raise ValueError("the encoder is frozen; build it with build_encoder(), not load_encoder()")
        if text not in ("captions", "instructions"):
            raise ValueError(f"text must be 'captions' or 'instructions', got {text!r}")
        if duplicates not in DUPLICATE_MODES:
            raise ValueError(f"duplicates must be one of {DUPLICATE_MODES}, got {duplicates!r}")
        if not 0 < init_temperature <= 1 or max_logit_scale < 1:
            raise ValueError("need 0 < init_temperature <= 1 and max_logit_scale >= 1")
        self.encoder = encoder
        self.text, self.duplicates = text, duplicates
        self.max_log_scale = math.log(max_logit_scale)
        self.text_head = nn.Sequential(nn.Linear(LANGUAGE_DIM, text_hidden), nn.GELU(),
                                       nn.Linear(text_hidden, encoder.proj_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.to(device=encoder.device)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, 3)`` → unit-norm image embeddings ``(B, P)``."""
        return F.normalize(self.encoder.image_embedding(self.prepare(images)), dim=-1)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """``B`` strings → unit-norm text embeddings ``(B, P)`` (frozen MiniLM → trainable MLP)."""
        frozen = embed_sentences(list(texts)).to(device=self.logit_scale.device, dtype=self.logit_scale.dtype)
        return F.normalize(self.text_head(frozen), dim=-1)

    def scale(self) -> torch.Tensor:
        """The clamped logit scale ``exp(logit_scale)`` (1 / temperature), a scalar."""
        return self.logit_scale.clamp(0.0, self.max_log_scale).exp()

    def logits(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """``(B, B)`` scaled cosine similarities, row = image, column = text."""
        return self.scale() * self.image_features(images) @ self.text_features(texts).t()

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        texts = batch[self.text]
        logits = self.logits(batch["images"], texts)
        loss = clip_loss(logits, texts, self.duplicates)
        with torch.no_grad():
            same = same_text(texts, logits.device)
            rows = torch.arange(len(texts), device=logits.device)
            i2t = same[rows, logits.argmax(dim=1)].float().mean()  # top-1 text has the right string
            t2i = same[logits.argmax(dim=0), rows].float().mean()
            dup = (same.sum() - len(texts)).float() / max(1, len(texts) * (len(texts) - 1))
        return loss, {"acc_i2t": i2t.item(), "acc_t2i": t2i.item(), "temperature": 1.0 / self.scale().item(),
                      "duplicate_pairs": dup.item()}


@register_objective("clip")
def build_contrastive(encoder: CLIPEncoder, **cfg: Any) -> ContrastiveObjective:
    """``make_objective(clip_encoder, **cfg)`` → :class:`ContrastiveObjective`."""
    return ContrastiveObjective(encoder, **cfg)
