"""``robrep train``: behaviour cloning → one policy checkpoint (see :mod:`policies`).

``policy=mlp|gmm`` trains a head on the frozen ``encoder``'s cached features; ``policy=cnn`` trains a CNN
from scratch on the demo images (the encoder group is ignored); ``policy=finetune`` fine-tunes the last
blocks of the same ``encoder`` with the head on the demo images. Prints the data used, the losses and the
checkpoint path. ``obs_keys.image=`` / ``obs_keys.proprio=[...]`` (or ``obs_keys=robomimic``) read a file robrep
did not write (:mod:`robrep.data.obs_keys`); the head's action size is the file's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from robrep.data.obs_keys import ObsKeys
from robrep.encoders.spec import EncoderSpec
from policies.model import ENCODER_TRUNKS
from policies.train import train_policy
from robrep.tb import tb_dir
from robrep.threads import thread_limit

log = logging.getLogger(__name__)


def default_out(cfg: DictConfig, policy_cfg: dict) -> Path:
    """``runs/policies/<dataset stem>_<encoder label, CNN arch or trunk>_<policy>_n{N}_s{seed}.pt``."""
    trunk = policy_cfg["trunk"]
    source = (Path(str(cfg.encoder.name)).stem if trunk in ENCODER_TRUNKS
              else policy_cfg["cnn"]["arch"] if trunk == "cnn" else trunk)
    return Path("runs/policies") / f"{Path(cfg.dataset).stem}_{source}_{policy_cfg['name']}_n{cfg.n}_s{cfg.seed}.pt"


def run(cfg: DictConfig) -> None:
    policy_cfg = OmegaConf.to_container(cfg.policy, resolve=True)
    out = Path(cfg.out) if cfg.out else default_out(cfg, policy_cfg)
    encoder = None
    if policy_cfg["trunk"] in ENCODER_TRUNKS:
        encoder = EncoderSpec.from_cfg(cfg)
    tensorboard = tb_dir(bool(cfg.tensorboard), "train", out.stem)
    if tensorboard is not None:
        log.info(f"TensorBoard scalars: {tensorboard}")
    with thread_limit(cfg.threads):
        summary = train_policy(policy_cfg, cfg.dataset, int(cfg.n), int(cfg.seed), out, encoder=encoder,
                               cache_dir=cfg.cache_dir, use_language=cfg.use_language,
                               feature_batch_size=cfg.feature_batch_size, device=cfg.device,
                               config=OmegaConf.to_container(cfg, resolve=True), progress=cfg.progress, log=log.info,
                               tensorboard=tensorboard, obs_keys=ObsKeys.from_cfg(cfg))
    t = summary["train"]
    log.info(f"trained {policy_cfg['name']} on N={cfg.n} demos ({summary['frames']} frames, seed {cfg.seed}): "
             f"{t['steps']} steps in {t['seconds']:.1f} s, best step {t['best_step']}, train loss {t['train_loss']:.4f}, "
             f"train action MSE {t['train_mse']:.4f}, valid action MSE {t['valid_mse']:.4f}")
    log.info(f"policy: {summary['path']}")
