"""Encoder diagnostics from the simulator's ground truth: keypoint correspondence and feature rank.

* :func:`keypoint_frames` renders frames of a task on given layouts (the scripted expert run a seeded number of steps
  from ``reset``, so the gripper and block move) and projects the centres of known parts — every block, the goal,
  the gripper's wrist and palm (:func:`keypoint_geoms`) — into the front camera (:func:`project`), with a visibility
  mask from a segmentation render (a keypoint is visible when its own geom covers its projected pixel).
* :func:`match_keypoints` is DIFT's correspondence test: the feature maps of two frames are upsampled bilinearly to
  the image size, each visible keypoint of frame A takes the feature at its pixel, and its match in frame B is the
  pixel of highest cosine similarity; the error is the pixel distance to the keypoint's true projection in B.
  :func:`pck` turns errors into PCK@α (the fraction within α px).
* :func:`label_probes` fits ridge probes of targets harder than positions (:func:`frame_labels`: the block-to-goal
  vector, gripper–block contact, the named block of push_color) on the features pooled to a 4 × 4 grid.
* :func:`effective_rank` is Roy & Vetterli's (2007) effective rank, ``exp`` of the entropy of the normalised
  singular values of a centred feature matrix: how many directions the features really use.

Pixel coordinates are ``(x, y)`` in pixels of the rendered image, x right, y down, ``(0, 0)`` the top-left corner
of the top-left pixel (pixel centres at ``i + 0.5``). World points are metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np
import torch
import torch.nn.functional as F

from envs import make_env
from envs.experts import make_expert
from envs.rendering import make_renderer
from robrep.probe.ridge import fit_predict, fold_ids, probe_r2
from robrep.readouts import pool_tokens

#: Keypoint name → how to find its geom: a geom name, or ``body:<name>`` for the first geom of a body. The gripper
#: is seen from the front camera as its wrist column above the palm; the fingers hide behind the palm (visible in
#: < 15 % of push frames), so they are not keypoints.
KEYPOINT_GEOMS: dict[str, str] = {"goal": "body:goal", "gripper_wrist": "wrist", "gripper_palm": "palm"}
#: Groups reported on their own (a keypoint belongs to the group its name starts with), besides ``all``.
KEYPOINT_GROUPS = ("block", "goal", "gripper")
#: PCK thresholds (pixels at the rendered image size).
PCK_THRESHOLDS = (2, 4, 8)


@dataclass
class KeypointFrames:
    """``images`` uint8 ``(F, H, W, 3)``; ``points`` float ``(F, K, 2)`` pixel (x, y) of the ``names`` keypoints;
    ``visible`` bool ``(F, K)``; ``seeds (F,)`` the layout seed and ``steps (F,)`` expert steps taken before the frame;
    ``instruction`` the task's instruction of each frame; ``labels`` the harder probe targets of :func:`frame_labels`
    (``(F, ...)`` each)."""

    images: np.ndarray
    points: np.ndarray
    visible: np.ndarray
    names: list[str]
    seeds: np.ndarray
    steps: np.ndarray
    instructions: list[str]
    labels: dict[str, np.ndarray]


def keypoint_geoms(model: mujoco.MjModel) -> dict[str, int]:
    """Keypoint name → geom id for the parts of ``model`` that exist: every geom named ``block*`` (a task's blocks)
    and the entries of :data:`KEYPOINT_GEOMS`."""
    out = {}
    for g in range(model.ngeom):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
        if name.startswith("block"):
            out[name] = g
    for key, ref in KEYPOINT_GEOMS.items():
        if ref.startswith("body:"):
            body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, ref[5:])
            geoms = [g for g in range(model.ngeom) if model.geom_bodyid[g] == body] if body >= 0 else []
            if geoms:
                out[key] = geoms[0]
        else:
            g = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, ref)
            if g >= 0:
                out[key] = g
    return out


def env_keypoint_geoms(base) -> dict[str, int]:
    """The keypoints of an env: its own ``keypoint_geoms()`` (adapters such as Meta-World's), else the tabletop
    parts of :func:`keypoint_geoms`."""
    return base.keypoint_geoms() if hasattr(base, "keypoint_geoms") else keypoint_geoms(base.model)


def frame_labels(base) -> dict[str, float | int]:
    """Probe targets harder than positions, of the env's current state: ``block_to_goal_x`` / ``_y`` (m, the task's
    block — push_color: the named one — minus the goal, in the table plane), ``contact`` (1 when a gripper geom
    touches a block), and on push_color ``target`` (the named block's index in ``base.colours``). Adapters with
    their own ``probe_labels()`` (Meta-World) answer for themselves."""
    if hasattr(base, "probe_labels"):
        return base.probe_labels()
    model, data = base.model, base.data
    blocks = [n for n in keypoint_geoms(model) if n.startswith("block")]
    out: dict[str, float | int] = {}
    target = getattr(base, "target", None) if hasattr(base, "colours") else None
    named = f"block_{target}" if target is not None else (blocks[0] if blocks else None)
    if named is not None and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "goal") >= 0:
        delta = base.body_pos(named) - base.body_pos("goal")
        out.update(block_to_goal_x=float(delta[0]), block_to_goal_y=float(delta[1]))
    hand = {mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("palm", "finger_left", "finger_right")}
    block_ids = {mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in blocks}
    touching = any({int(c.geom1), int(c.geom2)} & hand and {int(c.geom1), int(c.geom2)} & block_ids
                   for c in data.contact[:data.ncon])
    if blocks:
        out["contact"] = int(touching)
    if target is not None:
        out["target"] = int(list(base.colours).index(target))
    return out


def project(model: mujoco.MjModel, data: mujoco.MjData, camera: str, points: np.ndarray, height: int,
            width: int) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(P, 3)`` (m) → pixel ``(x, y)`` ``(P, 2)`` in a ``height × width`` render of ``camera``, and
    their depth along the view axis ``(P,)`` (m; > 0 in front). MuJoCo cameras look along their −z axis with y up;
    ``fovy`` is the vertical field of view."""
    cam = data.cam(camera)
    rot = cam.xmat.reshape(3, 3)  # columns: the camera's x, y, z axes in the world frame
    local = (np.asarray(points, dtype=np.float64) - cam.xpos) @ rot  # (P, 3) in the camera frame
    depth = -local[:, 2]
    focal = 0.5 * height / np.tan(np.deg2rad(model.cam(camera).fovy[0]) / 2)
    x = width / 2 + focal * local[:, 0] / depth
    y = height / 2 - focal * local[:, 1] / depth
    return np.stack([x, y], axis=-1), depth


def keypoint_frames(task: str, seeds: Sequence[int], max_steps: int = 60, image_size: int = 96, rng_seed: int = 0,
                    camera: str | None = None, contact_share: float = 0.5) -> KeypointFrames:
    """One frame per layout seed: ``reset(seed)``, the scripted expert for ``max_steps`` steps, and the frame after
    a step count ``k`` drawn (``rng_seed``) with probability ``contact_share`` among the steps where the gripper
    touches a block (when there are any), else uniformly from ``[0, max_steps]`` — gripper–block contact is a few
    percent of an expert's frames, too rare to probe otherwise; then the ``camera`` image (default: the env's own
    observation camera, ``front`` on the tabletop), its keypoints (see the module docstring) and the
    :func:`frame_labels` of that state."""
    rng = np.random.default_rng(rng_seed)
    env = make_env(task, image_size=image_size)
    base = env.unwrapped
    camera = camera or getattr(base, "camera", None) or "front"
    names_geoms = env_keypoint_geoms(base)
    names, geoms = list(names_geoms), np.array(list(names_geoms.values()))
    seg = make_renderer(base.model, image_size, image_size)
    seg.enable_segmentation_rendering()
    images, points, visible, steps, instructions, labels = [], [], [], [], [], []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=int(seed))
            expert = make_expert(base, seed=int(seed))
            states, touching = [base.get_sim_state()], [frame_labels(base).get("contact", 0)]
            for _ in range(max_steps):
                obs, *_ = env.step(expert(obs))
                states.append(base.get_sim_state())
                touching.append(frame_labels(base).get("contact", 0))
            contact_steps = np.flatnonzero(touching)
            pick_contact = rng.random() < contact_share and len(contact_steps) > 0
            k = int(rng.choice(contact_steps)) if pick_contact else int(rng.integers(0, max_steps + 1))
            base.set_sim_state(states[k])
            image = base.render_camera(camera)
            xy, depth = project(base.model, base.data, camera, base.data.geom_xpos[geoms], image_size, image_size)
            seg.update_scene(base.data, camera=camera)
            ids = seg.render()  # (H, W, 2): object id, object type
            col = np.clip(np.floor(xy[:, 0]).astype(int), 0, image_size - 1)
            row = np.clip(np.floor(xy[:, 1]).astype(int), 0, image_size - 1)
            inside = (xy >= 0).all(1) & (xy < image_size).all(1) & (depth > 0)
            hit = (ids[row, col, 1] == int(mujoco.mjtObj.mjOBJ_GEOM)) & (ids[row, col, 0] == geoms)
            images.append(image)
            points.append(xy)
            visible.append(inside & hit)
            steps.append(k)
            instructions.append(base.instruction)
            labels.append(frame_labels(base))
    finally:
        seg.close()
        env.close()
    return KeypointFrames(np.stack(images), np.stack(points).astype(np.float32), np.stack(visible), names,
                          np.asarray(seeds), np.asarray(steps), instructions,
                          {k: np.array([lab[k] for lab in labels]) for k in labels[0]})


def upsample(tokens: torch.Tensor, grid: tuple[int, int], size: int) -> torch.Tensor:
    """Tokens ``(N, D)`` on a row-major ``grid`` (h, w) → feature map ``(D, size, size)``, bilinear, unit-normed
    along D (so a dot product is a cosine similarity)."""
    h, w = grid
    fmap = tokens.float().T.reshape(1, -1, h, w)
    fmap = F.interpolate(fmap, size=(size, size), mode="bilinear", align_corners=False)[0]
    return F.normalize(fmap, dim=0)


def match_keypoints(tokens_a: torch.Tensor, tokens_b: torch.Tensor, grid: tuple[int, int], points_a: np.ndarray,
                    size: int) -> np.ndarray:
    """Nearest-feature matches in frame B of pixel keypoints ``points_a (K, 2)`` of frame A: tokens ``(N, D)`` of
    both frames on ``grid``, images ``size`` px square. Returns the matched pixel centres ``(K, 2)`` (x, y)."""
    fa, fb = upsample(tokens_a, grid, size), upsample(tokens_b, grid, size)
    col = np.clip(np.floor(points_a[:, 0]).astype(int), 0, size - 1)
    row = np.clip(np.floor(points_a[:, 1]).astype(int), 0, size - 1)
    query = fa[:, torch.from_numpy(row), torch.from_numpy(col)].T  # (K, D)
    best = (query @ fb.flatten(1)).argmax(dim=1).numpy()  # (K,) flat pixel index in B
    return np.stack([best % size + 0.5, best // size + 0.5], axis=-1)


def pair_errors(tokens: torch.Tensor, grid: tuple[int, int], frames: KeypointFrames,
                pairs: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel errors of every keypoint visible in both frames of each pair (A → B): ``tokens (F, N, D)`` of the frames.
    Returns ``errors (M,)`` and the keypoint index ``(M,)`` of each."""
    size = frames.images.shape[1]
    errors, which = [], []
    for a, b in pairs:
        keep = np.flatnonzero(frames.visible[a] & frames.visible[b])
        if not len(keep):
            continue
        found = match_keypoints(tokens[a], tokens[b], grid, frames.points[a, keep], size)
        errors.append(np.linalg.norm(found - frames.points[b, keep], axis=-1))
        which.append(keep)
    if not errors:
        return np.zeros(0), np.zeros(0, dtype=int)
    return np.concatenate(errors), np.concatenate(which)


def pck(errors: np.ndarray, thresholds: Sequence[float] = PCK_THRESHOLDS) -> dict[float, float]:
    """PCK@α: the fraction of ``errors`` (px) at most α, per threshold (NaN without errors)."""
    return {a: float(np.mean(errors <= a)) if len(errors) else float("nan") for a in thresholds}


def effective_rank(features: torch.Tensor | np.ndarray) -> float:
    """Effective rank (Roy & Vetterli 2007) of ``features (M, D)``: ``exp(H(p))``, ``p`` the singular values of the
    centred matrix divided by their sum; between 1 (one direction) and ``min(M, D)`` (all equal)."""
    x = torch.as_tensor(features).double()
    s = torch.linalg.svdvals(x - x.mean(0, keepdim=True))
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def label_probes(tokens: torch.Tensor, grid: tuple[int, int], labels: dict[str, np.ndarray], folds: int = 5,
                 cells: int = 4) -> dict[str, float]:
    """Held-out scores of ridge probes from ``tokens (F, N, D)`` average-pooled to ``cells × cells`` and flattened
    (one frame per layout, so plain ``folds``-fold CV holds out layouts): ``block_to_goal_r2`` (R² pooled over x and
    y), ``contact_balanced_acc`` (ridge on ±1, sign) and ``target_acc`` (ridge on one-hot, argmax) where those
    labels exist; NaN when a class is missing."""
    x = pool_tokens(tokens.float(), grid, cells).flatten(1).numpy().astype(np.float64)
    frame = np.arange(len(x))
    out: dict[str, float] = {}
    if "block_to_goal_x" in labels:
        y = np.stack([labels["block_to_goal_x"], labels["block_to_goal_y"]], axis=1)
        r2 = probe_r2(x, y, frame, folds)
        out["block_to_goal_r2"] = float(np.mean(r2))

    def out_of_fold(y: np.ndarray) -> np.ndarray:
        fold, pred = fold_ids(frame, folds), np.zeros_like(y)
        for f in range(folds):
            tr, te = fold != f, fold == f
            pred[te] = fit_predict(x[tr], y[tr], x[te], frame[tr], seed=f)
        return pred

    for key, name in (("contact", "contact_balanced_acc"), ("target", "target_acc")):
        if key not in labels:
            continue
        classes = np.unique(labels[key])
        if len(classes) < 2:
            out[name] = float("nan")
            continue
        onehot = (labels[key][:, None] == classes[None]).astype(np.float64)
        guess = classes[out_of_fold(onehot).argmax(1)]
        recall = [np.mean(guess[labels[key] == c] == c) for c in classes]
        out[name] = float(np.mean(recall)) if key == "contact" else float(np.mean(guess == labels[key]))
    return out
