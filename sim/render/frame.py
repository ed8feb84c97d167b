"""Compose frames of a drive: background, ground paint, scenery and actors far-to-near,
lighting, weather."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge.messages import Hazard
from sim.drive import Drive, FrameState
from sim.geometry import Camera
from sim.render.actors import BBox, paint_actor
from sim.render.canvas import Canvas
from sim.render.lighting import LOOKS, background, compose, light_map, rain
from sim.render.road import SIDEWALK_W, RoadPainter
from sim.world import Actor

TREE_GREENS = [(40, 110, 50), (35, 95, 60), (50, 125, 70), (30, 100, 80)]
BUILDING_COLOURS = [(150, 160, 175), (120, 130, 160), (170, 165, 150), (110, 115, 120), (90, 110, 140)]


@dataclass(frozen=True)
class Annotation:
    """Where an actor landed on screen (for tests and debugging)."""

    kind: str
    hazard: Hazard | None
    bbox: BBox
    state: dict


def make_scenery(drive: Drive, rng: np.random.Generator) -> list[Actor]:
    """Trees, lamp posts and buildings beside the roads, away from junctions and ramps."""
    L = drive.layout
    z_end = drive.route_length + 260.0
    margin = SIDEWALK_W + 1.0 if L.road.sidewalks else 2.5
    blocked = [(j.z - j.half_width - SIDEWALK_W - 10.0, j.z + j.half_width + SIDEWALK_W + 10.0) for j in drive.junctions]
    ramp_blocks = [(r.side, r.z - 10.0, r.z + r.length_m + 40.0) for r in drive.ramps]
    out: list[Actor] = []

    def place(x: float, z: float, side: int) -> None:
        if any(a <= z <= b for a, b in blocked):
            return
        if any(s == side and a <= z <= b for s, a, b in ramp_blocks):
            return
        kind = rng.choice(["tree", "tree", "tree", "post", "building"])
        if kind == "tree":
            out.append(Actor("tree", x, z, 0.0, TREE_GREENS[int(rng.integers(len(TREE_GREENS)))],
                             {"h": float(rng.uniform(5, 9)), "r": float(rng.uniform(1.5, 2.6))}))
        elif kind == "post":
            out.append(Actor("post", x - side * 1.5, z, 0.0, (125, 125, 130)))
        else:
            w = float(rng.uniform(8, 16))
            out.append(Actor("building", x + side * (w / 2 + 6), z, 0.0,
                             BUILDING_COLOURS[int(rng.integers(len(BUILDING_COLOURS)))],
                             {"w": w, "l": float(rng.uniform(8, 14)), "h": float(rng.uniform(6, 16))}))

    for side, edge in ((1, L.kerb_right), (-1, L.kerb_left)):
        z = float(rng.uniform(-40, -20))
        while z < z_end:
            place(edge + side * (margin + float(rng.uniform(0, 6))), z, side)
            z += float(rng.uniform(7, 18))
    for j in drive.junctions:
        for side_z in (-1, 1):
            x = float(rng.uniform(-160, -150))
            while x < 160:
                if not (L.kerb_left - 4 < x < L.kerb_right + 4):
                    zz = j.z + side_z * (j.half_width + margin + float(rng.uniform(0, 6)))
                    out.append(Actor("tree", x, zz, 0.0, TREE_GREENS[int(rng.integers(len(TREE_GREENS)))],
                                     {"h": float(rng.uniform(5, 9)), "r": float(rng.uniform(1.5, 2.6))}))
                x += float(rng.uniform(8, 18))
    return out


class SceneRenderer:
    """Renders the frames of one drive. Deterministic: all randomness comes from the seed."""

    def __init__(self, drive: Drive) -> None:
        self.drive = drive
        sc = drive.scenario
        self.width, self.height = sc.width, sc.height
        self.look = LOOKS[sc.variant]
        self.road = RoadPainter(drive.layout, self.look, drive.junctions, drive.ramps, drive.markings)
        self.scenery = make_scenery(drive, np.random.default_rng([drive.seed, 20_000]))

    def camera(self, frame: FrameState) -> Camera:
        ego = frame.ego
        # The nose dips under braking and lifts under throttle: a cue that survives a still frame.
        pitch = min(max(ego.a * self.height / 240.0, -8.0 * self.height / 360), 6.0 * self.height / 360)
        return Camera(ego.x, ego.z, ego.yaw, self.width, self.height, pitch)

    def paint(self, frame: FrameState) -> tuple[Canvas, list[Annotation]]:
        """Road, scenery and actors far-to-near, before lighting: surface colours, the light map
        and the lamps' emissive layer kept apart (sim.composite takes the actors from here)."""
        cam = self.camera(frame)
        bg = background(self.look, self.width, self.height, cam.horizon)
        canvas = Canvas(bg, light_map(self.look, self.width, self.height, cam.horizon, cam.focal))
        self.road.paint(canvas, cam)
        objects = [*self.scenery, *frame.actors]
        objects.sort(key=lambda a: -cam.forward_distance(a.x, a.z))
        notes = []
        for actor in objects:
            bbox = paint_actor(canvas, cam, self.look, frame.t, actor)
            if bbox is not None and actor.kind not in ("tree", "post", "building"):
                notes.append(Annotation(actor.kind, actor.hazard, bbox, dict(actor.state)))
        return canvas, notes

    def render(self, frame: FrameState) -> tuple[np.ndarray, list[Annotation]]:
        canvas, notes = self.paint(frame)
        img = compose(self.look, canvas.img, canvas.light, canvas.emissive)
        if self.look.name == "rain":
            img = rain(img, np.random.default_rng([self.drive.seed, 30_000, frame.index]))
        return img, notes

    def frames(self) -> Iterator[tuple[FrameState, np.ndarray, list[Annotation]]]:
        for frame in self.drive.frames:
            img, notes = self.render(frame)
            yield frame, img, notes
