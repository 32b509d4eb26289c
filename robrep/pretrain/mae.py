"""MAE objective (in-domain pretraining of the ``mae`` family; the ``voltron`` objective subclasses it).

Per image, a random ``mask_ratio`` of the ``N`` patches is hidden; the encoder runs on the prefix
(class) token and the visible patches ONLY (``embed`` → gather → ``transform``); a light decoder
(``decoder_dim`` wide, ``decoder_depth`` timm blocks, fixed 2-D sin-cos positions) fills the hidden
positions with a learned mask token and predicts every patch's pixels. Targets are the pixels of
the resized input in [0, 1] (the encoder input with its mean/std normalisation undone — not
ImageNet-normalised), patchified to ``(B, N, p·p·3)`` and, with ``norm_pix_loss`` (default), each
patch normalised by its own mean and variance. Loss = weighted MSE per patch averaged over the
masked patches, plus ``visible_loss_weight`` × the same on the visible ones (default 0).

``foreground_weight`` (default 0 = off) up-weights patches that differ from the background: with
``bg`` the per-image median colour and ``s_p`` the mean Euclidean RGB distance of patch ``p``'s
pixels to ``bg``, normalised by its mean over the image's patches, patch ``p`` weighs
``1 + foreground_weight · s_p`` (losses are weighted means).

``next_frame_weight`` (default 0 = off) ties the features to dynamics: the decoder also receives
the action ``batch["actions"] (B, A)`` as one extra token and a second linear head predicts every
patch of the *next* frame ``batch["next_images"]`` (same target normalisation); its weighted MSE
over all patches, times ``next_frame_weight``, is added to the loss. The encoder still sees only
the current frame's visible patches, so its tokens must carry what the action will move.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn

from robrep.encoders.mae import MAEEncoder, sincos_2d
from robrep.pretrain.objective import Objective, register_objective


class MAEDecoder(nn.Module):
    """Encoder tokens of the visible patches → pixel predictions for all ``N`` patches.

    ``forward(prefix (B, P, D_enc), visible (B, V, D_enc), restore (B, N))`` → ``(B, N, p·p·3)``;
    ``restore[b, i]`` is the position of patch ``i`` in ``[visible; masked]`` order. With
    ``action_dim > 0``, ``forward(..., action=(B, A))`` also returns the next frame's patches
    ``(B, N, p·p·3)`` (the action enters as one extra token).
    """

    def __init__(self, encoder_dim: int, grid: tuple[int, int], patch_size: int, dim: int = 128, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, action_dim: int = 0) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos", sincos_2d(dim, grid)[None], persistent=False)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_size * patch_size * 3)
        self.action_embed = nn.Linear(action_dim, dim) if action_dim else None
        self.pred_next = nn.Linear(dim, patch_size * patch_size * 3) if action_dim else None
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, prefix: torch.Tensor, visible: torch.Tensor, restore: torch.Tensor,
                action: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b, n = restore.shape
        vis = self.embed(visible)
        full = torch.cat([vis, self.mask_token.expand(b, n - vis.shape[1], -1)], dim=1)
        full = torch.gather(full, 1, restore[..., None].expand(-1, -1, full.shape[-1])) + self.pos
        heads = [self.embed(prefix)]
        if action is not None:
            if self.action_embed is None:
                raise ValueError("this decoder was built without action_dim; it cannot take an action")
            heads.append(self.action_embed(action.to(vis.dtype))[:, None])
        p = sum(h.shape[1] for h in heads)
        x = self.norm(self.blocks(torch.cat([*heads, full], dim=1)))[:, p:]
        return self.pred(x) if action is None else (self.pred(x), self.pred_next(x))


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, 3, H, W)`` → ``(B, (H/p)·(W/p), p·p·3)``, patches row-major, pixels (row, col, channel)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


class MAEObjective(Objective):
    """Masked-autoencoder loss for a :class:`MAEEncoder`; ``loss(batch)`` uses ``batch["images"]``."""

    def __init__(
        self,
        encoder: MAEEncoder,
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
        visible_loss_weight: float = 0.0,
        foreground_weight: float = 0.0,
        fixed_pos_embed: bool = True,
        next_frame_weight: float = 0.0,
        action_dim: int = 4,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if getattr(encoder, "_frozen", False):
            raise ValueError("the encoder is frozen; pretrain an unfrozen one (registry.build_encoder)")
        self.encoder = encoder
        self.patch_size = int(encoder.vit.patch_embed.patch_size[0])
        self.num_patches = encoder.grid_size[0] * encoder.grid_size[1]
        self.num_visible = max(1, int(round(self.num_patches * (1.0 - mask_ratio))))
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
        self.visible_loss_weight, self.foreground_weight = float(visible_loss_weight), float(foreground_weight)
        if next_frame_weight < 0:
            raise ValueError(f"next_frame_weight must be >= 0, got {next_frame_weight}")
        self.next_frame_weight = float(next_frame_weight)
        self.decoder = MAEDecoder(encoder.feature_dim, encoder.grid_size, self.patch_size, decoder_dim,
                                  decoder_depth, decoder_heads, action_dim=action_dim if next_frame_weight else 0)
        if fixed_pos_embed and encoder.vit.pos_embed is not None:
            encoder.vit.pos_embed.requires_grad_(False)  # MAE keeps the sin-cos positions fixed

    # ------------------------------------------------------------------ pieces (overridable)
    def random_mask(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``keep (B, V)`` visible patch indices, ``masked (B, N)`` float (1 = hidden), ``restore (B, N)``."""
        shuffle = torch.rand(batch_size, self.num_patches, device=device).argsort(dim=1)
        restore = shuffle.argsort(dim=1)
        masked = torch.ones(batch_size, self.num_patches, device=device)
        masked[:, : self.num_visible] = 0.0
        return shuffle[:, : self.num_visible], torch.gather(masked, 1, restore), restore

    def visible_tokens(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Embedded prefix + visible patch tokens ``(B, P + V, D)`` (position embeddings added)."""
        tokens = self.encoder.embed(x)
        p = self.encoder.num_prefix_tokens
        patches = torch.gather(tokens[:, p:], 1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return torch.cat([tokens[:, :p], patches], dim=1)

    def encode_visible(self, x: torch.Tensor, keep: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The encoder on the visible tokens only: ``(B, P + V, D)`` after blocks + final norm."""
        return self.encoder.transform(self.visible_tokens(x, keep))

    def targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixels (B, N, p·p·3) in [0, 1], targets (B, N, p·p·3))`` from the normalised input."""
        pixels = patchify(x.float() * self.encoder.pixel_std + self.encoder.pixel_mean, self.patch_size)
        if not self.norm_pix_loss:
            return pixels, pixels
        mean, var = pixels.mean(dim=-1, keepdim=True), pixels.var(dim=-1, keepdim=True)
        return pixels, (pixels - mean) / (var + 1e-6).sqrt()

    def patch_weights(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` weights: 1, or ``1 + foreground_weight · s_p`` (see the module docstring)."""
        b, n, _ = pixels.shape
        if self.foreground_weight == 0.0:
            return pixels.new_ones(b, n)
        rgb = pixels.reshape(b, n, -1, 3)
        bg = rgb.reshape(b, -1, 3).median(dim=1).values  # (B, 3)
        dist = (rgb - bg[:, None, None]).norm(dim=-1).mean(dim=-1)  # (B, N)
        return 1.0 + self.foreground_weight * dist / (dist.mean(dim=1, keepdim=True) + 1e-6)

    # ------------------------------------------------------------------ loss
    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        x = self.prepare(batch["images"])
        keep, masked, restore = self.random_mask(x.shape[0], x.device)
        encoded = self.encode_visible(x, keep, batch)
        p = self.encoder.num_prefix_tokens
        action = batch["actions"].to(x.device) if self.next_frame_weight else None
        pred = self.decoder(encoded[:, :p], encoded[:, p:], restore, action)
        pred, pred_next = pred if action is not None else (pred, None)
        pixels, target = self.targets(x)
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)  # (B, N)
        weights = self.patch_weights(pixels)
        hidden_w, visible_w = weights * masked, weights * (1.0 - masked)
        loss_masked = (per_patch * hidden_w).sum() / hidden_w.sum()
        loss_visible = (per_patch * visible_w).sum() / visible_w.sum().clamp_min(1e-6)
        loss = loss_masked + self.visible_loss_weight * loss_visible if self.visible_loss_weight else loss_masked
        logs = {"loss_masked": loss_masked.item(), "loss_visible": loss_visible.item()}
        if pred_next is not None:
            next_pixels, next_target = self.targets(self.prepare(batch["next_images"].to(x.device)))
            next_w = self.patch_weights(next_pixels)
            loss_next = ((pred_next.float() - next_target).pow(2).mean(dim=-1) * next_w).sum() / next_w.sum()
            loss = loss + self.next_frame_weight * loss_next
            logs["loss_next"] = loss_next.item()
        return loss, logs


@register_objective("mae")
def build_mae_objective(encoder: MAEEncoder, **cfg: Any) -> MAEObjective:
    """``MAEObjective(encoder, **cfg)`` (cfg = ``configs/encoder/mae.yaml`` → ``pretrain.objective``)."""
    return MAEObjective(encoder, **cfg)
