"""``robrep pretrain``: in-domain pretraining of one encoder family within a budget of optimizer steps or minutes
(:func:`robrep.pretrain.run.run_pretrain`). Saves ``out`` (``runs/weights/`` by default; the committed ``weights/``
only when ``out=weights/...`` is given) plus ``<out>.state.pt`` (to resume) and ``<out>.loss.csv`` / ``.png``.
``resume=<checkpoint> steps=+N`` grows a run by N steps."""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from robrep.pretrain.run import run_pretrain


def relative_steps(overrides: list[str]) -> str | None:
    """``"+N"`` when the command line said ``steps=+N`` (Hydra parses the value ``+N`` as the int N)."""
    raw = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == "steps"), "")
    raw = raw.strip("'\"")
    return raw if raw.startswith("+") else None


def run(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    grow = relative_steps(list(HydraConfig.get().overrides.task)) if HydraConfig.initialized() else None
    if grow is not None:
        with open_dict(cfg):
            cfg.steps = grow
    run_pretrain(cfg)
