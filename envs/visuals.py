"""Seeded visual variation of the tabletop scene: settings ``clean`` | ``varied`` | ``heldout``.

``clean`` is today's scene, bit for bit (no extra MJCF, nominal camera, lights and colours).
``varied`` and ``heldout`` redraw the scene's appearance at every reset from two DISJOINT pools —
heldout's table textures, colours and lighting ranges never occur in varied — so a policy trained
on varied demos can be evaluated on appearances it never saw ("demos varied, evaluation heldout").
Physics is untouched: the same reset seed gives the same object layout and privileged state in all
three settings. Units: m, deg; positions in the world frame (table top z = 0).

Per episode (factor: varied | heldout):

* table: one of six 64 px procedural textures (builtin checker / gradient / flat with random
  marks, :data:`POOLS` ``textures``), each its own material; the table geom's material id is
  switched (``mujoco.Renderer`` caches ``mat_texid`` when it is created, so rewriting a
  material's texture id later does not show). Colours are greys, browns, teal | violet tones.
* named colours — geoms or materials whose nominal colour has HSV saturation ≥ 0.5, i.e. what
  instructions name (red block / sphere / button cap, yellow goal disc, push_color's red, green,
  blue blocks): hue kept exactly, saturation × [0.85, 1] | [0.68, 0.83], value × [0.8, 1] |
  [0.66, 0.78], so they stay saturated (S ≥ 0.5) in their hue family.
* free colours — every other geom or material (hand, fingers, floor, button housing): drawn from
  the pool's 8-colour ``palette`` (light neutrals, cyan, teal | dark neutrals, violet, magenta);
  no palette colour has a named hue (red, yellow, green, blue) unless its saturation is < 0.4.
* lighting: the directional ``key`` light comes from azimuth [-150, -30] | [30, 150] (0 = +x,
  90 = +y: from the camera's side | the far side), elevation [55, 80] | [35, 50], diffuse
  [0.35, 0.6] | [0.62, 0.8]; headlight ambient [0.28, 0.42] | [0.18, 0.26], diffuse
  [0.45, 0.62] | [0.64, 0.75] (grey intensities). Clean (-45, 70.5, 0.5, 0.35, 0.55) lies in varied.
* distractors: 0–3 (uniform) of the visual-only slots (box, cylinder, sphere; contype /
  conaffinity 0, hidden = alpha 0), half-sizes [0.012, 0.025], resting on the table at a
  random yaw, in palette colours; xy uniform in [-0.25, 0.25]², inside the nominal ``front``
  view (6 % margin) and ≥ 6 cm plus their radius from every task body (objects, goals, button)
  and clear of each other.
* camera: ``front`` position + U(±0.01) per world axis; orientation × a rotation vector with
  components U(±1.5) about the camera's own axes (both settings alike).

The draw uses its own RNG, ``np.random.default_rng([seed, STREAM])`` (:func:`visual_rng`), so it
never perturbs the layout RNG. The drawn parameters are JSON-able (``env.episode_meta["visuals"]``)
and :meth:`SceneVisuals.apply` re-applies them exactly when a demo is replayed.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

SETTINGS = ("clean", "varied", "heldout")
#: Second entropy word of the visual RNG (decorrelates it from the layout RNG of the same seed).
STREAM = 0x76697375
#: Named colours: nominal HSV saturation at least this (their hue is kept).
NAMED_SATURATION = 0.5
#: Free colours may have a named hue only below this saturation.
NEUTRAL_SATURATION = 0.4
#: Hue bands (deg) of the colours instructions name; a band may wrap through 0.
NAMED_HUES: dict[str, tuple[float, float]] = {"red": (340, 20), "yellow": (40, 70), "green": (90, 150),
                                              "blue": (200, 250)}
CAMERA = "front"
KEY_LIGHT = "key"
TABLE_GEOM = "table"
#: Distractor slots: (geom name, MJCF type).
DISTRACTOR_SLOTS = (("distractor_box", "box"), ("distractor_cylinder", "cylinder"), ("distractor_sphere", "sphere"))
DISTRACTOR_HALF_SIZE = (0.012, 0.025)
DISTRACTOR_XY = 0.25
DISTRACTOR_CLEARANCE = 0.06
VIEW_MARGIN = 0.06
CAMERA_POS_JITTER = 0.01
CAMERA_ROT_JITTER_DEG = 1.5

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Span:
    """A closed interval ``[lo, hi]``."""

    lo: float
    hi: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))

    def overlaps(self, other: Span) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi


@dataclass(frozen=True)
class Texture:
    """A procedural 2-D table texture (``size`` px square) and its material (``repeat`` tiles per m)."""

    name: str
    builtin: str  # checker | gradient | flat
    rgb1: RGB
    rgb2: RGB
    repeat: float = 1.0
    random: float = 0.0  # fraction of pixels set to rgb2 as random marks (builtin flat)
    size: int = 64

    @property
    def material(self) -> str:
        return f"table_{self.name}"

    def xml(self) -> str:
        """MJCF ``<texture>`` + ``<material>`` assets."""
        rgb1, rgb2 = (" ".join(f"{v:g}" for v in c) for c in (self.rgb1, self.rgb2))
        colours = (f'rgb1="{rgb1}" mark="random" random="{self.random:g}" markrgb="{rgb2}"'
                   if self.builtin == "flat" else f'rgb1="{rgb1}" rgb2="{rgb2}"')
        return (f'<texture name="tex_{self.name}" type="2d" builtin="{self.builtin}" width="{self.size}" '
                f'height="{self.size}" {colours}/>'
                f'<material name="{self.material}" texture="tex_{self.name}" '
                f'texrepeat="{self.repeat:g} {self.repeat:g}" texuniform="{str(self.builtin != "gradient").lower()}"/>')


@dataclass(frozen=True)
class Pool:
    """What one setting draws from (see the module docstring)."""

    textures: tuple[Texture, ...]
    palette: tuple[RGB, ...]
    saturation: Span  # factor on a named colour's HSV saturation
    value: Span  # factor on a named colour's HSV value
    key_azimuth: Span  # deg, direction the key light comes from (0 = +x, 90 = +y)
    key_elevation: Span  # deg above the horizon
    key_diffuse: Span
    head_ambient: Span
    head_diffuse: Span

    def spans(self) -> dict[str, Span]:
        return {k: v for k, v in vars(self).items() if isinstance(v, Span)}


POOLS: dict[str, Pool] = {
    "varied": Pool(
        textures=(
            Texture("grey_check", "checker", (0.78, 0.78, 0.75), (0.52, 0.52, 0.55), repeat=8),
            Texture("brown_check", "checker", (0.66, 0.58, 0.48), (0.48, 0.40, 0.32), repeat=14),
            Texture("grey_gradient", "gradient", (0.70, 0.72, 0.74), (0.40, 0.44, 0.46)),
            Texture("stone", "flat", (0.60, 0.56, 0.50), (0.35, 0.32, 0.28), repeat=3, random=0.15),
            Texture("teal_check", "checker", (0.45, 0.58, 0.58), (0.62, 0.70, 0.70), repeat=6),
            Texture("light_wood", "flat", (0.72, 0.62, 0.50), (0.62, 0.52, 0.40), repeat=2, random=0.04),
        ),
        palette=((0.80, 0.80, 0.78), (0.62, 0.62, 0.66), (0.42, 0.42, 0.40), (0.92, 0.90, 0.86),
                 (0.10, 0.65, 0.70), (0.20, 0.50, 0.48), (0.55, 0.75, 0.78), (0.60, 0.52, 0.45)),
        saturation=Span(0.85, 1.0), value=Span(0.8, 1.0),
        key_azimuth=Span(-150, -30), key_elevation=Span(55, 80), key_diffuse=Span(0.35, 0.6),
        head_ambient=Span(0.28, 0.42), head_diffuse=Span(0.45, 0.62),
    ),
    "heldout": Pool(
        textures=(
            Texture("fine_check", "checker", (0.90, 0.90, 0.92), (0.22, 0.22, 0.25), repeat=20),
            Texture("violet_check", "checker", (0.55, 0.48, 0.62), (0.38, 0.33, 0.45), repeat=5),
            Texture("dark_gradient", "gradient", (0.35, 0.30, 0.28), (0.15, 0.13, 0.12)),
            Texture("terrazzo", "flat", (0.82, 0.80, 0.76), (0.10, 0.10, 0.10), repeat=4, random=0.25),
            Texture("lavender_gradient", "gradient", (0.80, 0.76, 0.86), (0.55, 0.50, 0.62)),
            Texture("slate", "flat", (0.30, 0.32, 0.36), (0.40, 0.42, 0.46), repeat=2, random=0.03),
        ),
        palette=((0.15, 0.15, 0.17), (0.30, 0.28, 0.33), (0.98, 0.98, 0.98), (0.50, 0.25, 0.70),
                 (0.70, 0.30, 0.65), (0.40, 0.30, 0.55), (0.72, 0.66, 0.80), (0.35, 0.40, 0.38)),
        saturation=Span(0.68, 0.83), value=Span(0.66, 0.78),
        key_azimuth=Span(30, 150), key_elevation=Span(35, 50), key_diffuse=Span(0.62, 0.8),
        head_ambient=Span(0.18, 0.26), head_diffuse=Span(0.64, 0.75),
    ),
}


def check_setting(setting: str) -> str:
    """``setting`` if it is one of :data:`SETTINGS`, else ``ValueError``."""
    if setting not in SETTINGS:
        raise ValueError(f"visuals must be one of {list(SETTINGS)}, got {setting!r}")
    return setting


def visual_rng(seed: int | None) -> np.random.Generator:
    """The visual-variation RNG of reset seed ``seed`` (``None``: fresh entropy)."""
    return np.random.default_rng(None if seed is None else [int(seed), STREAM])


def scene_xml(setting: str) -> tuple[str, str]:
    """(asset XML, worldbody XML) the setting adds to the scene: textures, materials and the hidden
    distractor slots; ``("", "")`` for clean."""
    if check_setting(setting) == "clean":
        return "", ""
    assets = "".join(t.xml() for t in POOLS[setting].textures)
    slots = "".join(f'<geom name="{name}" type="{kind}" size="0.02 0.02 0.02" pos="0 0 -0.5" rgba="0 0 0 0" '
                    f'contype="0" conaffinity="0" group="1"/>' for name, kind in DISTRACTOR_SLOTS)
    return assets, slots


def hue_family(rgb: Sequence[float]) -> str | None:
    """The :data:`NAMED_HUES` band holding ``rgb``'s hue, or ``None``."""
    h = colorsys.rgb_to_hsv(*rgb[:3])[0] * 360
    for name, (lo, hi) in NAMED_HUES.items():
        if (lo <= h <= hi) if lo <= hi else (h >= lo or h <= hi):
            return name
    return None


def jitter_named(rgb: Sequence[float], saturation: float, value: float) -> list[float]:
    """``rgb`` with its HSV saturation and value scaled (clipped to [0, 1]) and its hue kept."""
    h, s, v = colorsys.rgb_to_hsv(*rgb[:3])
    return [float(c) for c in colorsys.hsv_to_rgb(h, min(s * saturation, 1.0), min(v * value, 1.0))]


def _axis_angle_quat(rotvec: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of rotation vector ``rotvec`` (rad), ``(4,)``."""
    angle = float(np.linalg.norm(rotvec))
    if angle == 0.0:
        return np.array([1.0, 0.0, 0.0, 0.0])
    return np.array([np.cos(angle / 2), *(np.sin(angle / 2) * rotvec / angle)])


class SceneVisuals:
    """Draws and applies the per-episode appearance of one compiled scene model (edits ``model`` in place).

    Colour targets are the scene's materials and its geoms without a material (labels
    ``"material:<name>"`` / ``"geom:<name or #id>"``), except the table and the distractor slots.
    """

    def __init__(self, model: mujoco.MjModel, setting: str) -> None:
        self.model, self.setting = model, check_setting(setting)
        self.pool = POOLS.get(setting)
        self._nominal = {k: getattr(model, k).copy() for k in
                         ("geom_rgba", "geom_pos", "geom_quat", "geom_size", "geom_matid", "mat_rgba",
                          "light_dir", "light_diffuse", "cam_pos", "cam_quat")}
        self._nominal_head = (model.vis.headlight.ambient.copy(), model.vis.headlight.diffuse.copy())
        self._cam, self._key = model.camera(CAMERA).id, model.light(KEY_LIGHT).id
        self._table = model.geom(TABLE_GEOM).id
        self._slots = {name: model.geom(name).id for name, _ in DISTRACTOR_SLOTS} if self.pool else {}
        hand = model.body("hand").id
        self._task_bodies = [b for b in range(1, model.nbody) if model.body_rootid[b] != hand]
        skip = {self._table, *self._slots.values()}
        self._targets: dict[str, tuple[str, int]] = {}
        for m in range(model.nmat):
            if not model.material(m).name.startswith("table"):
                self._targets[f"material:{model.material(m).name}"] = ("mat_rgba", m)
        for g in range(model.ngeom):
            if g not in skip and model.geom_matid[g] < 0:
                self._targets[f"geom:{model.geom(g).name or f'#{g}'}"] = ("geom_rgba", g)

    def named(self, label: str) -> bool:
        """Whether colour target ``label`` is a named colour (nominal saturation ≥ :data:`NAMED_SATURATION`)."""
        field, i = self._targets[label]
        return colorsys.rgb_to_hsv(*self._nominal[field][i][:3])[1] >= NAMED_SATURATION

    # ----------------------------------------------------------------- drawing
    def sample(self, rng: np.random.Generator, data: mujoco.MjData) -> dict[str, Any]:
        """JSON-able parameters for one episode; ``data`` gives the task bodies' positions (after the layout)."""
        if self.pool is None:
            return {"setting": self.setting}
        pool = self.pool
        colours = {}
        for label, (field, i) in self._targets.items():
            if self.named(label):
                rgba = self._nominal[field][i]
                rgb = jitter_named(rgba, pool.saturation.sample(rng), pool.value.sample(rng))
                colours[label] = [*rgb, float(rgba[3])]
            else:
                colours[label] = self._palette_rgba(rng)
        light = {k: s.sample(rng) for k, s in pool.spans().items() if k.startswith(("key_", "head_"))}
        pos = self._nominal["cam_pos"][self._cam] + rng.uniform(-CAMERA_POS_JITTER, CAMERA_POS_JITTER, 3)
        quat = np.empty(4)
        rot = np.deg2rad(rng.uniform(-CAMERA_ROT_JITTER_DEG, CAMERA_ROT_JITTER_DEG, 3))
        mujoco.mju_mulQuat(quat, self._nominal["cam_quat"][self._cam], _axis_angle_quat(rot))
        return {
            "setting": self.setting,
            "table": pool.textures[rng.integers(len(pool.textures))].material,
            "colours": colours,
            "light": light,
            "camera": {"pos": pos.tolist(), "quat": quat.tolist()},
            "distractors": self._sample_distractors(rng, data),
        }

    def _palette_rgba(self, rng: np.random.Generator) -> list[float]:
        """An opaque colour of the pool's palette."""
        return [*self.pool.palette[rng.integers(len(self.pool.palette))], 1.0]

    def _sample_distractors(self, rng: np.random.Generator, data: mujoco.MjData) -> list[dict[str, Any]]:
        """0–3 distractors: ``{"slot", "pos" (3,) m, "size" (3,) m, "quat" (4,), "rgba" (4,)}`` each."""
        avoid = [(data.xpos[b, :2], DISTRACTOR_CLEARANCE) for b in self._task_bodies]
        chosen = rng.permutation(len(DISTRACTOR_SLOTS))[: rng.integers(len(DISTRACTOR_SLOTS) + 1)]
        out = []
        for name, kind in (DISTRACTOR_SLOTS[i] for i in chosen):
            size = rng.uniform(*DISTRACTOR_HALF_SIZE, 3)
            height = {"box": size[2], "cylinder": size[1], "sphere": size[0]}[kind]
            radius = float(np.hypot(size[0], size[1]) if kind == "box" else size[0])
            yaw = rng.uniform(-np.pi, np.pi)
            rgba = self._palette_rgba(rng)
            for _ in range(100):
                xy = rng.uniform(-DISTRACTOR_XY + radius, DISTRACTOR_XY - radius, 2)
                if self._in_view(np.array([*xy, height])) and all(
                        np.linalg.norm(xy - p) >= r + radius for p, r in avoid):
                    break
            else:
                continue  # no free spot: the slot stays hidden
            avoid.append((xy, radius + 0.01))
            out.append({"slot": name, "pos": [*map(float, xy), float(height)], "size": size.tolist(),
                        "quat": _axis_angle_quat(np.array([0.0, 0.0, yaw])).tolist(), "rgba": rgba})
        return out

    def _in_view(self, point: np.ndarray) -> bool:
        """Whether world ``point`` (m) projects inside the nominal camera image with :data:`VIEW_MARGIN`."""
        rot = np.empty(9)
        mujoco.mju_quat2Mat(rot, self._nominal["cam_quat"][self._cam])
        x, y, z = rot.reshape(3, 3).T @ (point - self._nominal["cam_pos"][self._cam])  # camera looks along -z
        if z >= 0:
            return False
        f = 0.5 / np.tan(np.deg2rad(self.model.cam_fovy[self._cam]) / 2)
        u, v = 0.5 + f * x / -z, 0.5 - f * y / -z
        return bool(VIEW_MARGIN <= u <= 1 - VIEW_MARGIN and VIEW_MARGIN <= v <= 1 - VIEW_MARGIN)

    # ----------------------------------------------------------------- applying
    def apply(self, params: Mapping[str, Any]) -> None:
        """Write ``params`` (from :meth:`sample`) into the model; absent parts are nominal. Call
        ``mj_kinematics`` and ``mj_camlight`` (or ``mj_forward``) before rendering."""
        if params.get("setting", self.setting) != self.setting:
            raise ValueError(f"episode visuals were drawn for setting {params['setting']!r}, "
                             f"but this env renders {self.setting!r}")
        m = self.model
        for k, v in self._nominal.items():
            getattr(m, k)[:] = v
        m.vis.headlight.ambient[:], m.vis.headlight.diffuse[:] = self._nominal_head
        if "table" in params:
            m.geom_matid[self._table] = m.material(params["table"]).id
        for label, rgba in params.get("colours", {}).items():
            field, i = self._targets[label]
            getattr(m, field)[i] = rgba
        if "light" in params:
            light = params["light"]
            az, el = np.deg2rad(light["key_azimuth"]), np.deg2rad(light["key_elevation"])
            m.light_dir[self._key] = -np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
            m.light_diffuse[self._key] = light["key_diffuse"]
            m.vis.headlight.ambient[:] = light["head_ambient"]
            m.vis.headlight.diffuse[:] = light["head_diffuse"]
        if "camera" in params:
            m.cam_pos[self._cam], m.cam_quat[self._cam] = params["camera"]["pos"], params["camera"]["quat"]
        for d in params.get("distractors", []):
            g = self._slots[d["slot"]]
            m.geom_pos[g], m.geom_size[g], m.geom_quat[g], m.geom_rgba[g] = d["pos"], d["size"], d["quat"], d["rgba"]
