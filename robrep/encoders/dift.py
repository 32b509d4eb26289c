"""DIFT: diffusion features (Tang et al., 2023) as a frozen spatial encoder.

An image is noised to timestep ``t`` with the model's own DDPM schedule (fixed, seeded noise, so
features are deterministic; ``ensemble`` > 1 averages over that many noise draws in one batched
pass), the U-Net runs once (stopped early, right after the block read), and the output of
``unet.up_blocks[up_block]`` (after its upsampler, as in DIFT) becomes the tokens ``(B, h·w, C)``.
There is no global token. ``t``, ``up_block``, ``ensemble``, ``pool`` and ``noise_seed`` are
feature-time choices (:meth:`DIFTEncoder.configure`); they are recorded in ``config``.

Two backbones, chosen by ``backbone``:

* ``"pixel"`` (in-domain, trained by ``robrep.pretrain.ddpm``): a ``diffusers.UNet2DModel`` on the
  image folded ``patch_size``×``patch_size`` into channels (pixel-unshuffle; 96 px → 48 channels at
  24×24), levels 24/12/6 with widths (48, 96, 160), attention at 12 and 6: 4.84 M parameters.
  Up-block grids at 96 px: up 0 → 12×12×160, up 1 → 24×24×96, up 2 → 24×24×48 (``pool`` divides);
  default read-out: up 1 average-pooled ×2 → 12×12×96 at t = 0 (see ``DEFAULTS``).
* ``"sd"`` (public Stable-Diffusion-1.x/2.x-style weights): ``weights="sd_folder:/path"`` to a
  diffusers folder with ``unet/``, ``vae/``, ``scheduler/`` and either ``text_encoder/`` +
  ``tokenizer/`` or a cached ``empty_prompt_embeds.pt`` ((1, L, D) or (L, D) tensor). Image → VAE
  latent mean × scaling factor → noised → UNet with the empty-prompt embedding (encoded once, kept as
  a buffer) → up-block features. Only the VAE encoder is kept. Loaded from the local folder only;
  ``weights="sd:<Hub repo id>"`` (e.g. ``sd:stabilityai/stable-diffusion-2-1``) finds that folder in the local
  Hugging Face cache (downloaded into it only when online), ``sd:<folder>`` is ``sd_folder:<folder>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from torch import nn

from robrep.encoders.base import Encoder, SpatialFeatures
from robrep.encoders.registry import register_encoder, register_family

#: Default in-domain U-Net (``UNet2DModel`` kwargs; ``in/out_channels`` and ``sample_size`` are derived).
PIXEL_UNET: dict[str, Any] = dict(
    block_out_channels=[48, 96, 160], layers_per_block=1, norm_num_groups=16, attention_head_dim=32,
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    up_block_types=["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
)
#: Default DDPM schedule of the in-domain model (DDPM paper's linear betas, 1000 steps).
PIXEL_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                       beta_end=0.02, prediction_type="epsilon")
#: Feature-time defaults per backbone. pixel: up block 1 pooled ×2 (12×12×96, the ViT's grid) at t = 0, the
#: best of ``benchmarks/dift_sweep.py`` on a smoke-test model (re-run the sweep on the real checkpoint);
#: sd: DIFT's choice for SD (t = 261, up block 1).
DEFAULTS = {"pixel": dict(t=0, up_block=1, pool=2), "sd": dict(t=261, up_block=1, pool=1)}
RUNTIME_KEYS = ("t", "up_block", "ensemble", "pool", "noise_seed")
EMPTY_PROMPT_FILE = "empty_prompt_embeds.pt"


class _Stop(Exception):
    """Raised by the capture hook to skip the rest of the U-Net."""


def _plain(cfg: Any) -> dict[str, Any]:
    """A diffusers config as a JSON-able dict without private (``_*``) keys (tuples → lists)."""
    return json.loads(json.dumps({k: v for k, v in dict(cfg).items() if not k.startswith("_")}, default=str))


@register_family
class DIFTEncoder(Encoder):
    """Diffusion-U-Net up-block features; see the module docstring. Input: ``(B, 3, S, S)`` in [-1, 1]."""

    runtime_keys = RUNTIME_KEYS  # feature-time choices that `configure` may change on a loaded checkpoint

    family = "dift"

    def __init__(
        self,
        backbone: str = "pixel",
        input_size: int = 96,
        t: int | None = None,
        up_block: int | None = None,
        ensemble: int = 1,
        pool: int | None = None,
        noise_seed: int = 0,
        patch_size: int = 4,
        unet: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        vae: dict[str, Any] | None = None,
        prompt_shape: Sequence[int] | None = None,
        source: str | None = None,
        _components: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(input_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        if backbone not in DEFAULTS:
            raise ValueError(f"backbone must be one of {sorted(DEFAULTS)}, got {backbone!r}")
        self.backbone = backbone
        comp = _components or {}
        if backbone == "pixel":
            if input_size % patch_size:
                raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
            unet_cfg = {**PIXEL_UNET, **(unet or {}), "in_channels": 3 * patch_size**2,
                        "out_channels": 3 * patch_size**2, "sample_size": input_size // patch_size}
            self.unet = UNet2DModel(**unet_cfg)
            self.latent_factor, sched_cfg = patch_size, {**PIXEL_SCHEDULER, **(scheduler or {})}
        else:
            if unet is None or vae is None or scheduler is None or prompt_shape is None:
                raise ValueError("backbone='sd' needs unet, vae, scheduler and prompt_shape configs; load public "
                                 "weights with weights='sd_folder:/path' instead of building it directly")
            if unet.get("addition_embed_type"):
                raise ValueError(f"SDXL-style UNets (addition_embed_type={unet['addition_embed_type']!r}) are not "
                                 "supported; use an SD-1.x/2.x-style folder")
            unet_cfg, sched_cfg = dict(unet), dict(scheduler)
            self.unet = comp["unet"] if "unet" in comp else UNet2DConditionModel.from_config(unet_cfg)
            vae_model = comp["vae"] if "vae" in comp else AutoencoderKL.from_config(vae)
            self.vae_encoder = vae_model.encoder
            self.vae_quant_conv = vae_model.quant_conv if vae_model.quant_conv is not None else nn.Identity()
            self.latent_scale = float(vae.get("scaling_factor") or 0.18215)
            self.latent_shift = float(vae.get("shift_factor") or 0.0)
            self.latent_factor = 2 ** (len(vae["block_out_channels"]) - 1)
            embeds = comp.get("prompt_embeds")
            self.register_buffer("prompt_embeds", torch.zeros(*prompt_shape) if embeds is None
                                 else embeds.detach().reshape(*prompt_shape).float().clone())
        self.scheduler = DDPMScheduler.from_config(sched_cfg)
        self.num_levels = len(self.unet.config.block_out_channels)
        self.latent_size = input_size // self.latent_factor
        multiple = self.latent_factor * 2 ** (self.num_levels - 1)
        if input_size % multiple:
            raise ValueError(f"input_size {input_size} must be divisible by {multiple} for this {backbone} U-Net "
                             f"({self.num_levels} levels)")
        self.config = dict(backbone=backbone, input_size=input_size, t=None, up_block=None, ensemble=ensemble,
                           pool=pool, noise_seed=noise_seed, patch_size=patch_size, unet=_plain(unet_cfg),
                           scheduler=_plain(self.scheduler.config), vae=None if vae is None else _plain(vae),
                           prompt_shape=None if prompt_shape is None else [int(s) for s in prompt_shape], source=source)
        d = DEFAULTS[backbone]
        self.configure(t=d["t"] if t is None else t, up_block=d["up_block"] if up_block is None else up_block,
                       ensemble=ensemble, pool=d["pool"] if pool is None else pool, noise_seed=noise_seed)

    # ------------------------------------------------------------------ feature-time configuration
    def configure(self, t: int | None = None, up_block: int | None = None, ensemble: int | None = None,
                  pool: int | None = None, noise_seed: int | None = None) -> "DIFTEncoder":
        """Change the feature-time choices in place (``None`` keeps a value); updates ``config``."""
        new = {k: (self.config[k] if v is None else int(v)) for k, v in
               dict(t=t, up_block=up_block, ensemble=ensemble, pool=pool, noise_seed=noise_seed).items()}
        steps = self.scheduler.config.num_train_timesteps
        if not 0 <= new["t"] < steps:
            raise ValueError(f"t must be in [0, {steps}), got {new['t']}")
        if not 0 <= new["up_block"] < self.num_levels:
            raise ValueError(f"up_block must be in [0, {self.num_levels}), got {new['up_block']}")
        if new["ensemble"] < 1 or new["pool"] < 1:
            raise ValueError(f"ensemble and pool must be >= 1, got {new['ensemble']}, {new['pool']}")
        res = self._block_resolution(new["up_block"])
        if res % new["pool"]:
            raise ValueError(f"pool {new['pool']} does not divide the {res}×{res} grid of up block {new['up_block']}")
        self.config.update(new)
        self.t, self.up_block, self.ensemble, self.pool = new["t"], new["up_block"], new["ensemble"], new["pool"]
        channels = self.unet.config.in_channels
        gen = torch.Generator().manual_seed(new["noise_seed"])
        noise = torch.randn(self.ensemble, channels, self.latent_size, self.latent_size, generator=gen)
        self.register_buffer("noise", noise.to(self.device, next(self.unet.parameters()).dtype), persistent=False)
        return self

    def _block_resolution(self, block: int) -> int:
        """Side of up block ``block``'s output map (every up block but the last upsamples ×2)."""
        lowest = self.latent_size // 2 ** (self.num_levels - 1)
        return lowest * 2 ** min(block + 1, self.num_levels - 1)

    @property
    def feature_dim(self) -> int:
        return int(list(reversed(self.unet.config.block_out_channels))[self.up_block])

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self._block_resolution(self.up_block) // self.pool
        return side, side

    # ------------------------------------------------------------------ network
    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``(B, 3, S, S)`` in [-1, 1] → the diffusion model's clean sample ``(B, C, s, s)``
        (pixel: pixel-unshuffled, ``C = 3·p²``, ``s = S/p``; sd: scaled VAE latent mean, ``s = S/8`` for SD)."""
        if self.backbone == "pixel":
            return F.pixel_unshuffle(x, self.latent_factor)
        mean = self.vae_quant_conv(self.vae_encoder(x)).chunk(2, dim=1)[0]
        return (mean - self.latent_shift) * self.latent_scale

    def denoise(self, sample: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The U-Net's output (epsilon prediction) for noisy ``sample (B, C, s, s)`` at ``timesteps (B,)``."""
        if self.backbone == "pixel":
            return self.unet(sample, timesteps).sample
        text = self.prompt_embeds.expand(sample.shape[0], -1, -1).to(sample.dtype)
        return self.unet(sample, timesteps, encoder_hidden_states=text).sample

    def encode_blocks(self, x: torch.Tensor, blocks: Sequence[int] | None = None) -> dict[int, SpatialFeatures]:
        """Features of several up blocks from one U-Net pass (at the configured ``t``/``ensemble``/``pool``):
        preprocessed ``(B, 3, S, S)`` → ``{block: SpatialFeatures(tokens (B, h_b·w_b, C_b))}``."""
        blocks = sorted({self.up_block} if blocks is None else {int(b) for b in blocks})
        if not blocks or blocks[0] < 0 or blocks[-1] >= self.num_levels:
            raise ValueError(f"blocks must be in [0, {self.num_levels}), got {blocks}")
        b, e = x.shape[0], self.ensemble
        z = self.to_latent(x).repeat_interleave(e, dim=0)
        noise = self.noise.to(z.dtype).repeat(b, 1, 1, 1)
        steps = torch.full((b * e,), self.t, dtype=torch.long, device=z.device)
        noisy = self.scheduler.add_noise(z, noise, steps)
        captured: dict[int, torch.Tensor] = {}

        def hook(block: int):
            def fn(module: nn.Module, args: Any, output: Any) -> None:
                captured[block] = output[0] if isinstance(output, tuple) else output
                if block == blocks[-1]:
                    raise _Stop

            return fn

        handles = [self.unet.up_blocks[k].register_forward_hook(hook(k)) for k in blocks]
        try:
            self.denoise(noisy, steps)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        out = {}
        for k in blocks:
            fmap = captured[k].float()
            fmap = fmap.view(b, e, *fmap.shape[1:]).mean(dim=1)
            if self.pool > 1:
                fmap = F.avg_pool2d(fmap, self.pool)
            out[k] = SpatialFeatures(fmap.flatten(2).transpose(1, 2).to(x.dtype).contiguous(), tuple(fmap.shape[-2:]))
        return out

    def encode(self, x: torch.Tensor) -> SpatialFeatures:
        """Preprocessed ``(B, 3, S, S)`` → tokens ``(B, h·w, C)`` of ``up_blocks[up_block]``, no global token."""
        return self.encode_blocks(x, [self.up_block])[self.up_block]


# ---------------------------------------------------------------------- loading public weights
#: Files a Stable-Diffusion repo (diffusers layout) must have in the local cache for ``sd:<repo id>``.
SD_REQUIRED = ("unet/config.json", "vae/config.json", "scheduler/scheduler_config.json",
               "text_encoder/config.json", "tokenizer/tokenizer_config.json")

def from_sd_folder(folder: str | Path, **cfg: Any) -> DIFTEncoder:
    """A ``backbone="sd"`` encoder from a local diffusers Stable-Diffusion-style folder (see module docstring).

    ``cfg``: ``input_size`` (default 256, must be a multiple of 64 for SD-1.x), ``t``, ``up_block``,
    ``ensemble``, ``pool``, ``noise_seed``. Never touches the network (``local_files_only``).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"Stable-Diffusion folder not found: {folder}")
    for sub in ("unet", "vae", "scheduler"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"Stable-Diffusion folder {folder} has no {sub}/ subfolder")
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True, low_cpu_mem_usage=False)
    vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True, low_cpu_mem_usage=False)
    sched = DDPMScheduler.from_config(DDPMScheduler.load_config(folder / "scheduler", local_files_only=True))
    cached = folder / EMPTY_PROMPT_FILE
    if (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir():
        from transformers import CLIPTextModel, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True).eval()
        ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        with torch.no_grad():
            embeds = text_encoder(ids)[0]
    elif cached.is_file():
        embeds = torch.load(cached, map_location="cpu", weights_only=True)
        embeds = embeds[None] if embeds.ndim == 2 else embeds
    else:
        raise FileNotFoundError(f"Stable-Diffusion folder {folder} has neither text_encoder/ + tokenizer/ "
                                f"nor a cached {EMPTY_PROMPT_FILE}")
    if embeds.ndim != 3 or embeds.shape[0] != 1:
        raise ValueError(f"empty-prompt embedding must be (1, L, D), got {tuple(embeds.shape)}")
    cfg.setdefault("input_size", 256)
    return DIFTEncoder(backbone="sd", unet=_plain(unet.config), vae=_plain(vae.config), scheduler=_plain(sched.config),
                       prompt_shape=list(embeds.shape), source=f"sd_folder:{folder}",
                       _components=dict(unet=unet, vae=vae, prompt_embeds=embeds), **cfg)


@register_encoder("dift")
def dift(weights: str | None = None, **cfg: Any) -> DIFTEncoder:
    """DIFT encoder. ``weights``: ``None`` (random in-domain ``pixel`` U-Net), a robrep checkpoint
    ``*.pt`` (feature-time keys in ``cfg`` are applied; architecture keys must match it), or
    ``"sd_folder:/path"`` (a local Stable-Diffusion-style diffusers folder, see :func:`from_sd_folder`)."""
    if weights is None:
        return DIFTEncoder(**cfg)
    weights = str(weights)
    if weights.startswith("sd_folder:"):
        return from_sd_folder(weights[len("sd_folder:"):], **cfg)
    if weights.startswith("sd:"):  # a local folder, or a Hub repo id resolved through the local HF cache
        target = weights[len("sd:"):]
        if Path(target).expanduser().is_dir():
            return from_sd_folder(target, **cfg)
        from robrep.encoders.hub import hub_snapshot

        return from_sd_folder(hub_snapshot(target, SD_REQUIRED), **cfg)
    if weights.endswith(".pt"):
        from robrep.encoders.weights import load_checkpoint_as

        return load_checkpoint_as(weights, DIFTEncoder.family, **cfg)  # type: ignore[return-value]
    raise ValueError(f"unknown DIFT weights {weights!r}: use None, a robrep checkpoint '*.pt', 'sd:<Hub repo id or "
                     "folder>' or 'sd_folder:/path'")
