"""Paint on the ground: road surfaces, sidewalks, lane lines, junctions, ramps, stop lines,
zebras and yield teeth. Everything is a world-fixed polygon, so markings stream past at the
ego's speed and the road swings round when the ego turns."""

from __future__ import annotations

import numpy as np

from sim.geometry import Camera, RoadLayout, ramp_offset
from sim.render.canvas import Canvas
from sim.render.lighting import Look
from sim.scenario import LANE_WIDTH_M
from sim.world import Junction, Marking, Ramp

DASH_M = 3.0
PERIOD_M = 9.0
LINE_W = 0.18
VIEW_BEHIND = 12.0
VIEW_AHEAD = 140.0
FAR = 2000.0
SIDEWALK_W = 3.0


def quad(x0: float, x1: float, z0: float, z1: float) -> list[tuple[float, float, float]]:
    return [(x0, 0.0, z0), (x1, 0.0, z0), (x1, 0.0, z1), (x0, 0.0, z1)]


def quad_x(z0: float, z1: float, x0: float, x1: float) -> list[tuple[float, float, float]]:
    return quad(x0, x1, z0, z1)


def gaps_for(junctions: list[Junction], margin: float = 0.8) -> list[tuple[float, float]]:
    return [(j.z - j.half_width - margin, j.z + j.half_width + margin) for j in junctions]


def split(z0: float, z1: float, gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """[z0, z1] minus the gaps."""
    pieces = [(z0, z1)]
    for g0, g1 in gaps:
        nxt = []
        for a, b in pieces:
            if g1 <= a or g0 >= b:
                nxt.append((a, b))
                continue
            if a < g0:
                nxt.append((a, g0))
            if g1 < b:
                nxt.append((g1, b))
        pieces = nxt
    return pieces


class RoadPainter:
    def __init__(self, layout: RoadLayout, look: Look, junctions: list[Junction], ramps: list[Ramp],
                 markings: list[Marking]) -> None:
        self.layout = layout
        self.look = look
        self.junctions = junctions
        self.ramps = ramps
        self.markings = markings
        self.gaps = gaps_for(junctions)

    def _ground(self, canvas: Canvas, cam: Camera, world: np.ndarray | list, colour: tuple[int, int, int]) -> None:
        canvas.poly(cam.project_polygon(world), colour)  # ground keeps the headlight map's light

    def paint(self, canvas: Canvas, cam: Camera) -> None:
        L, look = self.layout, self.look
        z_lo, z_hi = -FAR, FAR
        # Sidewalks, interrupted by cross roads.
        if L.road.sidewalks:
            for a, b in split(z_lo, z_hi, gaps_for(self.junctions, 0.0)):
                self._ground(canvas, cam, quad(L.kerb_right, L.kerb_right + SIDEWALK_W, a, b), look.sidewalk)
                self._ground(canvas, cam, quad(L.kerb_left - SIDEWALK_W, L.kerb_left, a, b), look.sidewalk)
        # Ramps under the main road so the main road's edge stays crisp.
        for ramp in self.ramps:
            self._paint_ramp(canvas, cam, ramp)
        # Main road: carriageway and shoulders.
        self._ground(canvas, cam, quad(L.kerb_left, L.kerb_right, z_lo, z_hi), look.shoulder)
        self._ground(canvas, cam, quad(L.left_edge, L.right_edge, z_lo, z_hi), look.asphalt)
        for j in self.junctions:
            self._paint_junction(canvas, cam, j)
        self._paint_lines(canvas, cam)
        for m in self.markings:
            self._paint_marking(canvas, cam, m)

    def _paint_junction(self, canvas: Canvas, cam: Camera, j: Junction) -> None:
        L, look = self.layout, self.look
        hw = j.half_width
        if L.road.sidewalks:
            for x0, x1 in ((-FAR, L.kerb_left), (L.kerb_right, FAR)):
                self._ground(canvas, cam, quad_x(j.z - hw - SIDEWALK_W, j.z - hw, x0, x1), look.sidewalk)
                self._ground(canvas, cam, quad_x(j.z + hw, j.z + hw + SIDEWALK_W, x0, x1), look.sidewalk)
        self._ground(canvas, cam, quad_x(j.z - hw, j.z + hw, -FAR, FAR), look.asphalt)
        # Corner fillets so a turning ego stays on tarmac.
        r = j.corner_radius
        for sx, x_edge in ((1, L.kerb_right), (-1, L.kerb_left)):
            for sz, z_edge in ((-1, j.z - hw), (1, j.z + hw)):
                pts = [[x_edge, 0.0, z_edge], [x_edge + sx * r, 0.0, z_edge], [x_edge, 0.0, z_edge + sz * r]]
                self._ground(canvas, cam, np.array(pts), look.asphalt)
        # Cross road centre line (dashed) and edge lines, away from the main road.
        paint = look.paint_white
        x_from = int(np.floor((cam.x - VIEW_AHEAD) / PERIOD_M))
        x_to = int(np.ceil((cam.x + VIEW_AHEAD) / PERIOD_M))
        for k in range(x_from, x_to + 1):
            x0 = k * PERIOD_M
            x1 = x0 + DASH_M
            if x1 < L.kerb_left - 1 or x0 > L.kerb_right + 1:
                self._ground(canvas, cam, quad_x(j.z - LINE_W / 2, j.z + LINE_W / 2, x0, x1), paint)
        for z_line in (j.z - hw + 0.3, j.z + hw - 0.3):
            for x0, x1 in ((-FAR, L.kerb_left - 1), (L.kerb_right + 1, FAR)):
                self._ground(canvas, cam, quad_x(z_line - LINE_W / 2, z_line + LINE_W / 2, x0, x1), paint)

    def _paint_ramp(self, canvas: Canvas, cam: Camera, ramp: Ramp) -> None:
        half = LANE_WIDTH_M / 2 + 0.3
        us = np.arange(0.0, ramp.length_m + 0.1, 4.0)
        centre = (ramp.lane_x + ramp.side * np.array([ramp_offset(u) for u in us])).tolist()
        zs = (ramp.z + us).tolist()
        us = us.tolist()
        left = [(c - half, 0.0, z) for c, z in zip(centre, zs, strict=True)]
        right = [(c + half, 0.0, z) for c, z in zip(centre, zs, strict=True)]
        self._ground(canvas, cam, left + right[::-1], self.look.asphalt)
        # Edge lines of the ramp once it has separated from the main road.
        for offset in (-half + 0.2, half - 0.2):
            for i in range(3, len(us) - 1):
                x0, x1 = centre[i] + offset, centre[i + 1] + offset
                strip = [
                    (x0 - LINE_W / 2, 0.0, zs[i]), (x0 + LINE_W / 2, 0.0, zs[i]),
                    (x1 + LINE_W / 2, 0.0, zs[i + 1]), (x1 - LINE_W / 2, 0.0, zs[i + 1]),
                ]
                self._ground(canvas, cam, strip, self.look.paint_white)

    def _paint_lines(self, canvas: Canvas, cam: Camera) -> None:
        L, look = self.layout, self.look
        z_near, z_far = cam.z - VIEW_AHEAD, cam.z + VIEW_AHEAD
        # Ramps open the edge line where they leave.
        left_gaps = list(self.gaps)
        for ramp in self.ramps:
            if ramp.side < 0:
                left_gaps.append((ramp.z - 2.0, ramp.z + ramp.length_m))
        right_gaps = list(self.gaps) + [(r.z - 2.0, r.z + r.length_m) for r in self.ramps if r.side > 0]
        solid: list[tuple[float, tuple[int, int, int], list[tuple[float, float]]]] = [
            (L.right_edge - 0.15, look.paint_white, right_gaps),
        ]
        if L.road.oncoming_lanes:
            solid += [(-0.12, look.paint_yellow, self.gaps), (0.12, look.paint_yellow, self.gaps),
                      (L.left_edge + 0.15, look.paint_white, self.gaps)]
        else:
            solid.append((0.15, look.paint_yellow, left_gaps))
        for x, colour, gaps in solid:
            for a, b in split(max(z_near, -FAR), min(z_far, FAR), gaps):
                self._ground(canvas, cam, quad(x - LINE_W / 2, x + LINE_W / 2, a, b), colour)
        dashed = [i * LANE_WIDTH_M for i in range(1, L.road.lanes)]
        dashed += [-i * LANE_WIDTH_M for i in range(1, L.road.oncoming_lanes)]
        k0 = int(np.floor(z_near / PERIOD_M))
        k1 = int(np.ceil(z_far / PERIOD_M))
        for k in range(k0, k1 + 1):
            a, b = k * PERIOD_M, k * PERIOD_M + DASH_M
            if any(g0 < b and a < g1 for g0, g1 in self.gaps):
                continue
            for x in dashed:
                self._ground(canvas, cam, quad(x - LINE_W / 2, x + LINE_W / 2, a, b), look.paint_white)

    def _paint_marking(self, canvas: Canvas, cam: Camera, m: Marking) -> None:
        white = self.look.paint_white
        if m.kind == "stop_line":
            self._ground(canvas, cam, quad(m.x0, m.x1, m.z, m.z + 0.6), white)
        elif m.kind == "zebra":
            x = m.x0 + 0.25
            while x + 0.5 <= m.x1:
                self._ground(canvas, cam, quad(x, x + 0.5, m.z - 2.0, m.z + 2.0), white)
                x += 1.0
        elif m.kind == "yield_line":
            x = m.x0 + 0.2
            while x + 0.6 <= m.x1:
                tri = [(x, 0.0, m.z), (x + 0.6, 0.0, m.z), (x + 0.3, 0.0, m.z - 0.9)]
                self._ground(canvas, cam, tri, white)
                x += 0.9
