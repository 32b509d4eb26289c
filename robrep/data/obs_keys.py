"""Which observation keys of a demo file are the policy's image and proprio (``obs_keys`` in the configs).

robrep's own files (:class:`robrep.data.demo_file.DemoWriter`) call them ``obs/image`` and ``obs/proprio``; a
robomimic dataset has e.g. ``obs/agentview_image`` uint8 ``(T, H, W, 3)``, ``obs/robot0_eef_pos`` ``(T, 3)`` and
``obs/robot0_gripper_qpos`` ``(T, 2)``. An :class:`ObsKeys` maps them::

    robrep train dataset=lift_ph.hdf5 obs_keys.image=agentview_image \\
        obs_keys.proprio=[robot0_eef_pos,robot0_gripper_qpos]      # or: obs_keys=robomimic

The image is one key; the proprio vector ``(..., P)`` is the concatenation of the listed keys along the last axis,
in the order listed. The defaults are the dataclass defaults below; ``configs/obs_keys/default.yaml`` spells the
same values for the command line (a test keeps the two equal). A policy checkpoint records its mapping
(``obs_keys``), so acting reads the keys the policy was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np


@dataclass(frozen=True)
class ObsKeys:
    """``image``: the uint8 ``(T, H, W, 3)`` observation key; ``proprio``: keys concatenated (in order) into the
    proprio vector."""

    image: str = "image"
    proprio: tuple[str, ...] = ("proprio",)

    def __post_init__(self) -> None:
        proprio = (self.proprio,) if isinstance(self.proprio, str) else tuple(str(k) for k in self.proprio)
        object.__setattr__(self, "proprio", proprio)
        if not str(self.image) or not proprio or any(not k for k in proprio):
            raise ValueError(f"obs_keys needs an image key and at least one proprio key, got image={self.image!r}, "
                             f"proprio={list(proprio)}")
        object.__setattr__(self, "image", str(self.image))

    @classmethod
    def from_cfg(cls, cfg: Any) -> "ObsKeys":
        """From a command config holding an ``obs_keys`` node, from such a node (or plain mapping) itself, or the
        defaults for ``None`` / a config without ``obs_keys``. Unknown entries in the node are an error (typos)."""
        if isinstance(cfg, ObsKeys):
            return cfg
        if cfg is None:
            return cls()
        if "obs_keys" in cfg:
            return cls.from_cfg(cfg["obs_keys"])
        if not any(k in cfg for k in ("image", "proprio")):
            return cls()  # a command config without the group
        unknown = sorted(set(cfg.keys()) - {"image", "proprio"})
        if unknown:
            raise KeyError(f"unknown obs_keys entr{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: image, proprio")
        proprio = cfg["proprio"] if "proprio" in cfg else cls.proprio
        return cls(image=str(cfg["image"] if "image" in cfg else cls.image),
                   proprio=(proprio,) if isinstance(proprio, str) else tuple(str(k) for k in proprio))

    def to_dict(self) -> dict[str, Any]:
        """``{"image": str, "proprio": [str, ...]}`` (JSON-able; what a checkpoint records)."""
        return {"image": self.image, "proprio": list(self.proprio)}

    @property
    def is_default(self) -> bool:
        return self == ObsKeys()

    def needed(self, proprio: bool = True) -> list[str]:
        """The obs keys a consumer reads: the image, and the proprio keys when ``proprio``."""
        return [self.image, *(self.proprio if proprio else ())]

    def missing(self, available: Iterable[str], proprio: bool = True) -> list[str]:
        """Needed keys (:meth:`needed`) absent from ``available``."""
        have = set(available)
        return [k for k in self.needed(proprio) if k not in have]

    def override_hint(self, available: Iterable[str]) -> str:
        """A ``key=value`` override that would map ``available`` keys (guessing an image key by name), e.g.
        ``obs_keys.image=agentview_image obs_keys.proprio=[robot0_eef_pos,robot0_gripper_qpos]``."""
        have = sorted(available)
        images = [k for k in have if "image" in k or "rgb" in k] or ["<image key>"]
        rest = [k for k in have if k not in images] or ["<key>"]
        return f"obs_keys.image={images[0]} obs_keys.proprio=[{','.join(rest)}]"

    def image_of(self, obs: Mapping[str, Any]) -> np.ndarray:
        """``obs[image]`` as an array (uint8 ``(..., H, W, 3)`` expected; checked by the consumer)."""
        return np.asarray(obs[self.image])

    def proprio_of(self, obs: Mapping[str, Any]) -> np.ndarray:
        """float32 ``(..., P)``: the proprio keys (each ``(..., P_i)``) concatenated along the last axis."""
        parts = [np.asarray(obs[k], dtype=np.float32) for k in self.proprio]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
