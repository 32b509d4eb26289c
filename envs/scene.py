"""MJCF for the shared tabletop scene: table, Cartesian parallel-jaw gripper, cameras.

World frame: metres, z up, the table top is the plane z = 0 and the workspace is
x, y ∈ [-0.25, 0.25]. The gripper's tool-centre point (TCP) is the midpoint between the
fingertips' lower edges; the hand body origin *is* the TCP. Tasks add their own bodies
as MJCF fragments (``objects``) and assets.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Gripper finger travel per side (m): 0 = closed, ``FINGER_TRAVEL`` = fully open.
FINGER_TRAVEL = 0.045
#: Half-extent of the reachable TCP box in x and y (m).
WORKSPACE_XY = 0.25
#: TCP height limits (m).
WORKSPACE_Z = (0.0, 0.30)


@dataclass(frozen=True)
class CameraPose:
    """A fixed camera: ``pos`` (m) in the world frame looking at ``target``, vertical field of view (deg)."""

    pos: tuple[float, float, float] = (0.0, -0.42, 0.52)
    target: tuple[float, float, float] = (0.0, 0.02, 0.0)
    fovy: float = 42.0


def _xyaxes(pos: tuple[float, float, float], target: tuple[float, float, float]) -> str:
    """MJCF ``xyaxes`` for a camera at ``pos`` looking at ``target`` with world z up."""
    import numpy as np

    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    x = np.cross(forward, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(x, forward)
    return " ".join(f"{v:.5f}" for v in (*x, *y))


def build_scene_xml(
    objects: str = "",
    assets: str = "",
    contact: str = "",
    camera: CameraPose = CameraPose(),
    table_rgba: str = "0.55 0.45 0.35 1",
    timestep: float = 0.002,
) -> str:
    """Return the MJCF text of the scene with the task's ``objects`` (body XML), assets and contact exclusions."""
    xy = _xyaxes(camera.pos, camera.target)
    lo, hi = WORKSPACE_Z
    return f"""
<mujoco model="robrep_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" gravity="0 0 -9.81" cone="elliptic" impratio="5"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.55 0.55 0.55" specular="0.05 0.05 0.05"/>
    <map znear="0.01" zfar="5"/>
  </visual>
  <default>
    <geom friction="1.0 0.005 0.0001" solref="0.004 1" solimp="0.95 0.99 0.001"/>
    <default class="visual">
      <geom contype="0" conaffinity="0" group="1"/>
    </default>
  </default>
  <asset>
    <material name="table_mat" rgba="{table_rgba}"/>
    <material name="floor_mat" rgba="0.22 0.24 0.27 1"/>
    <material name="hand_mat" rgba="0.25 0.25 0.28 1"/>
    <material name="finger_mat" rgba="0.85 0.85 0.88 1"/>
    {assets}
  </asset>
  <worldbody>
    <light name="key" pos="0.3 -0.3 1.2" dir="-0.25 0.25 -1" directional="true" diffuse="0.5 0.5 0.5"/>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.75" material="floor_mat"/>
    <geom name="table" type="box" size="0.4 0.4 0.025" pos="0 0 -0.025" material="table_mat"/>
    <camera name="front" mode="fixed" pos="{' '.join(map(str, camera.pos))}" xyaxes="{xy}" fovy="{camera.fovy}"/>
    <body name="hand" pos="0 0 0" gravcomp="1">
      <joint name="hand_x" type="slide" axis="1 0 0" range="{-WORKSPACE_XY} {WORKSPACE_XY}" damping="60"/>
      <joint name="hand_y" type="slide" axis="0 1 0" range="{-WORKSPACE_XY} {WORKSPACE_XY}" damping="60"/>
      <joint name="hand_z" type="slide" axis="0 0 1" range="{lo} {hi}" damping="60"/>
      <inertial pos="0 0 0.06" mass="0.5" diaginertia="0.002 0.002 0.002"/>
      <geom name="palm" type="box" size="0.02 0.065 0.012" pos="0 0 0.062" material="hand_mat"/>
      <geom name="wrist" type="cylinder" size="0.015 0.06" pos="0 0 0.13" material="hand_mat" class="visual"/>
      <site name="tcp" pos="0 0 0" size="0.004" rgba="1 1 0 0"/>
      <camera name="wrist" mode="fixed" pos="0 -0.09 0.12" xyaxes="1 0 0 0 0.64 0.77" fovy="60"/>
      <body name="finger_left" pos="0 0.006 0.025" gravcomp="1">
        <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_TRAVEL}" damping="5"/>
        <geom name="finger_left" type="box" size="0.012 0.006 0.025" mass="0.02" material="finger_mat"/>
      </body>
      <body name="finger_right" pos="0 -0.006 0.025" gravcomp="1">
        <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_TRAVEL}" damping="5"/>
        <geom name="finger_right" type="box" size="0.012 0.006 0.025" mass="0.02" material="finger_mat"/>
      </body>
    </body>
    {objects}
  </worldbody>
  <contact>{contact}</contact>
  <actuator>
    <position name="act_x" joint="hand_x" kp="2000" ctrlrange="{-WORKSPACE_XY} {WORKSPACE_XY}"/>
    <position name="act_y" joint="hand_y" kp="2000" ctrlrange="{-WORKSPACE_XY} {WORKSPACE_XY}"/>
    <position name="act_z" joint="hand_z" kp="2000" ctrlrange="{lo} {hi}"/>
    <position name="act_finger_left" joint="finger_left" kp="200" ctrlrange="0 {FINGER_TRAVEL}"/>
    <position name="act_finger_right" joint="finger_right" kp="200" ctrlrange="0 {FINGER_TRAVEL}"/>
  </actuator>
</mujoco>
"""
