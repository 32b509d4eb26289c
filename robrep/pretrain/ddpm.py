"""DDPM (Ho et al., 2020) pretraining of the in-domain DIFT U-Net: epsilon prediction, MSE.

The encoder (:class:`robrep.encoders.dift.DIFTEncoder`, ``backbone="pixel"``) owns the U-Net and the
scheduler config (1000 steps, linear betas 1e-4 → 0.02 by default), so the saved encoder checkpoint
is the whole diffusion model. Per batch: ``x0`` = the preprocessed images in [-1, 1], folded
``patch_size``×``patch_size`` into channels; ``t ~ U{0, …, T-1}``; ``eps ~ N(0, I)``;
``x_t = scheduler.add_noise(x0, eps, t)``; loss = ``mean((unet(x_t, t) - eps)²)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from robrep.encoders.dift import DIFTEncoder
from robrep.pretrain.objective import Objective, register_objective


class DDPMObjective(Objective):
    """Epsilon-prediction DDPM loss on a pixel-space :class:`DIFTEncoder`.

    ``max_timestep`` (default: the schedule's ``T``) caps the sampled timesteps, e.g. to spend the
    budget only on the low-noise range the features are read at; ``None`` = the standard objective.
    """

    def __init__(self, encoder: DIFTEncoder, max_timestep: int | None = None) -> None:
        super().__init__()
        if not isinstance(encoder, DIFTEncoder) or encoder.backbone != "pixel":
            raise ValueError("DDPM pretraining needs a DIFTEncoder with backbone='pixel' "
                             f"(got {type(encoder).__name__}, backbone {getattr(encoder, 'backbone', None)!r})")
        steps = int(encoder.scheduler.config.num_train_timesteps)
        self.max_timestep = steps if max_timestep is None else int(max_timestep)
        if not 1 <= self.max_timestep <= steps:
            raise ValueError(f"max_timestep must be in [1, {steps}], got {max_timestep}")
        self.encoder = encoder

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """``batch["images"]`` uint8 ``(B, H, W, 3)`` → scalar MSE between predicted and true noise."""
        x0 = self.encoder.to_latent(self.prepare(batch["images"]))  # (B, 3·p², S/p, S/p)
        t = torch.randint(0, self.max_timestep, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        pred = self.encoder.denoise(self.encoder.scheduler.add_noise(x0, noise, t), t)
        per_sample = F.mse_loss(pred.float(), noise.float(), reduction="none").flatten(1).mean(1)
        loss = per_sample.mean()
        low = t < self.max_timestep // 4
        logs = {"mse": loss.item()}
        if low.any():
            logs["mse_low_t"] = per_sample[low].mean().item()
        return loss, logs


@register_objective("dift")
def build_ddpm(encoder: DIFTEncoder, **cfg: Any) -> DDPMObjective:
    """The ``dift`` family's in-domain objective (``cfg``: :class:`DDPMObjective` kwargs)."""
    return DDPMObjective(encoder, **cfg)
