"""World and camera geometry shared by the simulation and the renderer.

World frame: the ground is the plane y = 0, x points right and z forward along the main road,
y up. The main road's centre line (between the two directions) is x = 0; the ego's direction
uses x > 0. A pinhole camera sits on the ego car at ``CAMERA_HEIGHT_M``; its yaw turns it in
the ground plane (positive = towards +x, i.e. to the right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.scenario import LANE_WIDTH_M, RoadSpec

CAMERA_HEIGHT_M = 1.4
NEAR_M = 0.6
HORIZON_FRACTION = 0.42  # the horizon row as a share of the height: more road than sky
FOCAL_FRACTION = 0.75  # focal length as a share of the width: ~67 degrees horizontal FOV


@dataclass(frozen=True)
class Camera:
    x: float
    z: float
    yaw: float
    width: int
    height: int
    pitch_px: float = 0.0  # a small vertical shift (bumps, braking dive)

    @property
    def focal(self) -> float:
        return FOCAL_FRACTION * self.width

    @property
    def horizon(self) -> float:
        return HORIZON_FRACTION * self.height + self.pitch_px

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World (N, 3) [x, y, z] -> camera (N, 3) [right, up, forward]."""
        dx = points[:, 0] - self.x
        dz = points[:, 2] - self.z
        s, c = math.sin(self.yaw), math.cos(self.yaw)
        forward = dx * s + dz * c
        right = dx * c - dz * s
        up = points[:, 1] - CAMERA_HEIGHT_M
        return np.stack([right, up, forward], axis=1)

    def project_camera(self, cam: np.ndarray) -> np.ndarray:
        """Camera (N, 3) with forward >= NEAR_M -> pixel (N, 2) [u, v]."""
        f = self.focal
        u = self.width / 2 + f * cam[:, 0] / cam[:, 2]
        v = self.horizon - f * cam[:, 1] / cam[:, 2]
        return np.stack([u, v], axis=1)

    def forward_distance(self, x: float, z: float) -> float:
        return (x - self.x) * math.sin(self.yaw) + (z - self.z) * math.cos(self.yaw)

    def lateral_offset(self, x: float, z: float) -> float:
        return (x - self.x) * math.cos(self.yaw) - (z - self.z) * math.sin(self.yaw)

    def project_polygon(self, world: np.ndarray | list) -> list[tuple[float, float]] | None:
        """Project a planar world polygon (N, 3) to pixel corners [(u, v), ...], clipped to the
        view frustum (with a guard band of half a frame each side, so edges stay exact); None if
        hidden.

        Plain Python on purpose: polygons have 3-8 corners, where numpy's per-call overhead
        costs more than the arithmetic."""
        s, c = math.sin(self.yaw), math.cos(self.yaw)
        cx, cz = self.x, self.z
        pts = []
        for x, y, z in (world.tolist() if isinstance(world, np.ndarray) else world):
            dx, dz = x - cx, z - cz
            pts.append((dx * c - dz * s, y - CAMERA_HEIGHT_M, dx * s + dz * c))
        k = self.width / self.focal  # half-width plus a half-frame guard band, over the focal length
        for a, b, d in ((0.0, 1.0, NEAR_M), (1.0, k, 0.0), (-1.0, k, 0.0)):
            pts = _clip(pts, a, b, d)
            if pts is None:
                return None
        f, half, hor = self.focal, self.width / 2, self.horizon
        return [(half + f * r / fw, hor - f * u / fw) for r, u, fw in pts]

    def project_point(self, x: float, y: float, z: float) -> tuple[float, float, float] | None:
        """(u, v, forward) of one world point, or None behind the near plane."""
        s, c = math.sin(self.yaw), math.cos(self.yaw)
        dx, dz = x - self.x, z - self.z
        forward = dx * s + dz * c
        if forward < NEAR_M:
            return None
        right = dx * c - dz * s
        f = self.focal
        return self.width / 2 + f * right / forward, self.horizon - f * (y - CAMERA_HEIGHT_M) / forward, forward


def _clip(pts: list[tuple[float, float, float]], a: float, b: float, d: float) -> list | None:
    """Sutherland-Hodgman: keep the part of the polygon with ``a * right + b * forward >= d``."""
    dist = [a * p[0] + b * p[2] - d for p in pts]
    if min(dist) >= 0:
        return pts
    if max(dist) < 0:
        return None
    out = []
    n = len(pts)
    for i in range(n):
        j = (i + 1) % n
        pi, di, dj = pts[i], dist[i], dist[j]
        if di >= 0:
            out.append(pi)
        if (di >= 0) != (dj >= 0):
            t = di / (di - dj)
            pj = pts[j]
            out.append((pi[0] + t * (pj[0] - pi[0]), pi[1] + t * (pj[1] - pi[1]), pi[2] + t * (pj[2] - pi[2])))
    return out if len(out) >= 3 else None


def clip_near(cam: np.ndarray, near: float = NEAR_M) -> np.ndarray | None:
    """Sutherland-Hodgman clip of a polygon against the plane forward >= near."""
    return clip_plane(cam, np.array([0.0, 0.0, 1.0]), near)


def clip_plane(cam: np.ndarray, normal: np.ndarray, offset: float = 0.0) -> np.ndarray | None:
    """Sutherland-Hodgman clip of a polygon against the half space ``normal . p >= offset``."""
    dist = cam @ normal - offset
    inside = dist >= 0
    if inside.all():
        return cam
    if not inside.any():
        return None
    out = []
    n = len(cam)
    for i in range(n):
        j = (i + 1) % n
        if inside[i]:
            out.append(cam[i])
        if inside[i] != inside[j]:
            t = dist[i] / (dist[i] - dist[j])
            out.append(cam[i] + t * (cam[j] - cam[i]))
    return np.array(out) if len(out) >= 3 else None


@dataclass(frozen=True)
class RoadLayout:
    """Lateral positions on the main road, from the road spec."""

    road: RoadSpec

    @property
    def right_edge(self) -> float:
        return self.road.lanes * LANE_WIDTH_M

    @property
    def left_edge(self) -> float:
        return -self.road.oncoming_lanes * LANE_WIDTH_M

    @property
    def shoulder_edge(self) -> float:
        return self.right_edge + self.road.shoulder_m

    @property
    def shoulder_center(self) -> float:
        return self.right_edge + self.road.shoulder_m / 2

    @property
    def kerb_right(self) -> float:
        return self.shoulder_edge

    @property
    def kerb_left(self) -> float:
        return self.left_edge - (self.road.shoulder_m if self.road.oncoming_lanes == 0 else 0.5)

    def lane_center(self, lane: int) -> float:
        return (lane + 0.5) * LANE_WIDTH_M

    def oncoming_lane_center(self, lane: int = 0) -> float:
        """Oncoming lane 0 is the one next to the centre line."""
        return -(lane + 0.5) * LANE_WIDTH_M

    @property
    def half_width_total(self) -> float:
        return max(abs(self.kerb_left), abs(self.kerb_right)) + (3.0 if self.road.sidewalks else 0.0)


def quarter_turn(u: float, x0: float, z0: float, radius: float, direction: int) -> tuple[float, float, float]:
    """Pose (x, z, yaw) ``u`` metres into a 90 degree turn that starts at (x0, z0) heading +z.
    ``direction`` +1 turns right, -1 left; past the arc the path runs straight."""
    arc = math.pi * radius / 2
    if u <= arc:
        phi = u / radius
        return x0 + direction * radius * (1 - math.cos(phi)), z0 + radius * math.sin(phi), direction * phi
    rest = u - arc
    return x0 + direction * (radius + rest), z0 + radius, direction * math.pi / 2


RAMP_CURVATURE = 1.0 / 500.0  # lateral offset k * u^2 of an exit ramp u metres past its start


def ramp_offset(u: float) -> float:
    return RAMP_CURVATURE * u * u if u > 0 else 0.0


def ramp_slope(u: float) -> float:
    return 2 * RAMP_CURVATURE * u if u > 0 else 0.0
