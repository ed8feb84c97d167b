"""Painters for everything that stands on the road: cars (with brake, tail, head and hazard
lights), the emergency vehicle, traffic lights, pedestrians, cyclists, cones, arrow boards,
signs, and the scenery (trees, lamp posts, buildings) that makes ego motion visible.

Cues are deliberately strong, because a tiny model sees these frames at 448x256: brake lights
are large and bloom, traffic-light lamps are oversized, cones come with an arrow board.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from sim.geometry import NEAR_M, Camera
from sim.render.canvas import Canvas, Colour, scale
from sim.render.lighting import Look, headlight
from sim.world import Actor

BBox = tuple[float, float, float, float]

RED_LAMP: Colour = (40, 40, 255)
YELLOW_LAMP: Colour = (0, 200, 255)
GREEN_LAMP: Colour = (120, 255, 40)
AMBER: Colour = (0, 165, 255)
OFF_LAMP: Colour = (50, 50, 55)
HEAD_LAMP: Colour = (215, 245, 255)


@dataclass
class Paint:
    canvas: Canvas
    cam: Camera
    look: Look
    t: float
    light: float | None  # light factor for this actor (None: uniform lighting)
    boxes: list[BBox]

    def project(self, pts: np.ndarray | list) -> np.ndarray | None:
        uv = self.cam.project_polygon(pts)
        if uv is not None:
            us = [q[0] for q in uv]
            vs = [q[1] for q in uv]
            self.boxes.append((min(us), min(vs), max(us), max(vs)))
        return uv

    def point(self, x: float, y: float, z: float) -> tuple[float, float, float] | None:
        return self.cam.project_point(x, y, z)

    def fill(self, pts: np.ndarray | list, colour: Colour) -> None:
        self.canvas.poly(self.project(pts), colour, self.light)

    def px(self, metres: float, forward: float) -> float:
        return self.cam.focal * metres / forward

    def lamp(self, x: float, y: float, z: float, radius_m: float, colour: Colour, intensity: float) -> None:
        p = self.point(x, y, z)
        if p is None:
            return
        u, v, f = p
        r = self.px(radius_m, f)
        self.boxes.append((u - r, v - r, u + r, v + r))
        if intensity > 0:
            self.canvas.lamp((u, v), r, colour, intensity)
        else:
            self.canvas.disc((u, v), max(r, 0.8), colour, self.light)

    def limb(self, a: tuple[float, float, float], b: tuple[float, float, float], width_m: float, colour: Colour) -> None:
        pa, pb = self.point(*a), self.point(*b)
        if pa is None or pb is None:
            return
        f = (pa[2] + pb[2]) / 2
        self.canvas.line(pa[:2], pb[:2], colour, max(1.0, self.px(width_m, f)), self.light)
        self.boxes.append((min(pa[0], pb[0]), min(pa[1], pb[1]), max(pa[0], pb[0]), max(pa[1], pb[1])))


def axes(yaw: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(forward, right) unit vectors in (x, z) for a heading."""
    s, c = math.sin(yaw), math.cos(yaw)
    return (s, c), (c, -s)


def local(x: float, z: float, yaw: float, r: float, f: float) -> tuple[float, float]:
    fwd, right = axes(yaw)
    return x + r * right[0] + f * fwd[0], z + r * right[1] + f * fwd[1]


def box(p: Paint, x: float, z: float, yaw: float, length: float, width: float, y0: float, y1: float,
        colour: Colour, top: Colour | None = None, f_off: float = 0.0) -> dict[str, bool]:
    """A shaded box; returns which faces faced the camera. Visible faces of a convex box never
    overlap, so they need no ordering."""
    hl, hw = length / 2, width / 2
    sn, cs = math.sin(yaw), math.cos(yaw)
    # forward = (sn, cs), right = (cs, -sn) in (x, z)

    def at(r: float, f: float) -> tuple[float, float]:
        f += f_off
        return x + r * cs + f * sn, z - r * sn + f * cs

    c = {(r, f): at(r, f) for r in (-hw, hw) for f in (-hl, hl)}
    faces = {
        "front": ((-hw, hl), (hw, hl), (0.0, hl), 0.95),
        "back": ((-hw, -hl), (hw, -hl), (0.0, -hl), 0.92),
        "left": ((-hw, -hl), (-hw, hl), (-hw, 0.0), 0.75),
        "right": ((hw, -hl), (hw, hl), (hw, 0.0), 0.8),
    }
    cx, cz = at(0.0, 0.0)
    seen = {}
    for name, (ka, kb, mid, shade) in faces.items():
        fx, fz = at(*mid)
        facing = (fx - cx) * (p.cam.x - fx) + (fz - cz) * (p.cam.z - fz) > 0
        seen[name] = facing
        if facing:
            (ax, az), (bx, bz) = c[ka], c[kb]
            p.fill([(ax, y0, az), (bx, y0, bz), (bx, y1, bz), (ax, y1, az)], scale(colour, shade))
    if y1 < 1.4:  # the camera sits at 1.4 m: only lower tops are visible
        corners = [c[(-hw, -hl)], c[(hw, -hl)], c[(hw, hl)], c[(-hw, hl)]]
        p.fill([(a, y1, b) for a, b in corners], scale(top or colour, 1.1))
    return seen


def billboard(p: Paint, x: float, z: float, outline: list[tuple[float, float]], colour: Colour) -> None:
    """A flat shape facing the camera; ``outline`` is (across, up) in metres."""
    _, right = axes(p.cam.yaw)
    p.fill([(x + a * right[0], y, z + a * right[1]) for a, y in outline], colour)


def plate(p: Paint, x: float, z: float, outline: list[tuple[float, float]], colour: Colour) -> None:
    """A flat shape in the plane z = const (signs, signal faces), seen from -z."""
    p.fill([(x + a, y, z) for a, y in outline], colour)


def disc_outline(cx: float, cy: float, r: float, n: int = 20) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n)) for k in range(n)]


def shadow(p: Paint, x: float, z: float, yaw: float, length: float, width: float) -> None:
    pts = [[*local(x, z, yaw, r, f)] for r, f in ((-width / 2, -length / 2), (width / 2, -length / 2),
                                                   (width / 2, length / 2), (-width / 2, length / 2))]
    p.canvas.poly(p.cam.project_polygon([(a, 0.01, b) for a, b in pts]), (30, 30, 32))


# --- vehicles -----------------------------------------------------------------------------------

def paint_car(p: Paint, a: Actor) -> None:
    length, width = 4.4, 1.8
    x, z, yaw = a.x, a.z, a.yaw
    shadow(p, x, z, yaw, length + 0.3, width + 0.2)
    for r in (-width / 2 + 0.15, width / 2 - 0.15):
        for f in (-length / 2 + 0.8, length / 2 - 0.8):
            wx, wz = local(x, z, yaw, r, f)
            box(p, wx, wz, yaw, 0.65, 0.25, 0.0, 0.36, (25, 25, 25))
    seen = box(p, x, z, yaw, length, width, 0.3, 1.05, a.colour)
    box(p, x, z, yaw, 2.3, 1.6, 1.05, 1.5, (70, 55, 45), top=a.colour, f_off=-0.35)
    lights_on = p.look.lights_on
    blink = a.state.get("hazard_lights") and int(p.t * 3) % 2 == 0
    hl = length / 2 + 0.02
    if seen["back"]:
        for side in (-0.62, 0.62):
            lx, lz = local(x, z, yaw, side, -hl)
            if a.state.get("brake"):
                p.lamp(lx, 0.85, lz, 0.2, RED_LAMP, 1.0)
            elif lights_on:
                p.lamp(lx, 0.85, lz, 0.13, (40, 40, 210), 0.35)
            else:
                p.lamp(lx, 0.85, lz, 0.13, (40, 40, 150), 0.0)
            if blink:
                bx, bz = local(x, z, yaw, side * 1.2, -hl)
                p.lamp(bx, 0.7, bz, 0.14, AMBER, 1.0)
        if a.state.get("brake"):
            cx, cz = local(x, z, yaw, 0.0, -1.53)
            p.lamp(cx, 1.45, cz, 0.1, RED_LAMP, 1.0)
    if seen["front"]:
        for side in (-0.6, 0.6):
            lx, lz = local(x, z, yaw, side, hl)
            p.lamp(lx, 0.72, lz, 0.15, HEAD_LAMP, 0.9 if lights_on else 0.0)
            if blink:
                bx, bz = local(x, z, yaw, side * 1.25, hl)
                p.lamp(bx, 0.7, bz, 0.12, AMBER, 1.0)


def paint_emergency(p: Paint, a: Actor) -> None:
    length, width = 6.0, 2.2
    x, z, yaw = a.x, a.z, a.yaw
    shadow(p, x, z, yaw, length + 0.3, width + 0.2)
    seen = box(p, x, z, yaw, length, width, 0.35, 2.6, a.colour)
    box(p, x, z, yaw, length + 0.04, width + 0.04, 1.1, 1.4, (30, 30, 220))  # red band all round
    box(p, x, z, yaw, 0.5, 1.9, 2.6, 2.85, (60, 60, 60), f_off=length / 2 - 0.8)
    face = length / 2 + 0.02 if seen["front"] else -(length / 2 + 0.02)
    flash = int(a.state.get("flash", 0))
    for side, colour, on in ((-0.6, (40, 40, 255), flash == 0), (0.6, (255, 80, 30), flash == 1)):
        lx, lz = local(x, z, yaw, side, length / 2 - 0.8 + (0.3 if seen["front"] else -0.3))
        p.lamp(lx, 2.75, lz, 0.32 if on else 0.18, colour, 1.6 if on else 0.25)
    if seen["front"]:
        for side in (-0.75, 0.75):
            lx, lz = local(x, z, yaw, side, face)
            p.lamp(lx, 0.8, lz, 0.18, HEAD_LAMP, 1.0)


# --- signals and signs --------------------------------------------------------------------------

def paint_traffic_light(p: Paint, a: Actor) -> None:
    h = float(a.state.get("height", 4.6))
    pole_x = float(a.state.get("pole_x", a.x + 3))
    phase = a.state.get("phase", "green")
    box(p, pole_x, a.z, 0.0, 0.22, 0.22, 0.0, h + 1.7, (70, 70, 75))
    mid = (pole_x + a.x) / 2
    box(p, mid, a.z, 0.0, 0.15, abs(pole_x - a.x), h + 1.5, h + 1.65, (70, 70, 75))
    if p.cam.z >= a.z - 0.3:  # seen from behind: no lamps
        box(p, a.x, a.z, 0.0, 0.4, 0.7, h, h + 1.5, (30, 30, 30))
        return
    for head_x, base in ((a.x, h), (pole_x - 0.4, 2.2)):
        box(p, head_x, a.z, 0.0, 0.4, 0.7, base, base + 1.5, (28, 28, 28))
        for name, dy, colour in (("red", 1.22, RED_LAMP), ("yellow", 0.75, YELLOW_LAMP), ("green", 0.28, GREEN_LAMP)):
            on = name == phase
            p.lamp(head_x, base + dy, a.z - 0.22, 0.24, colour if on else OFF_LAMP, 1.4 if on else 0.0)


def paint_sign_yield(p: Paint, a: Actor) -> None:
    box(p, a.x, a.z, 0.0, 0.08, 0.08, 0.0, 2.1, (150, 150, 150))
    if p.cam.z >= a.z:
        return
    plate(p, a.x, a.z - 0.05, [(-0.65, 3.05), (0.65, 3.05), (0.0, 1.92)], (30, 30, 220))
    plate(p, a.x, a.z - 0.06, [(-0.42, 2.92), (0.42, 2.92), (0.0, 2.2)], (245, 245, 245))


def paint_sign_speed(p: Paint, a: Actor) -> None:
    box(p, a.x, a.z, 0.0, 0.08, 0.08, 0.0, 2.0, (150, 150, 150))
    if p.cam.z >= a.z:
        return
    cy, r = 2.45, 0.5
    if a.state.get("end"):
        plate(p, a.x, a.z - 0.05, disc_outline(0, cy, r), (30, 30, 30))
        plate(p, a.x, a.z - 0.06, disc_outline(0, cy, r - 0.05), (245, 245, 245))
        for k in (-0.18, 0.0, 0.18):
            d = 0.05
            stripe = [(-0.3 + k - d, cy - 0.3 + k + d), (-0.3 + k + d, cy - 0.3 + k - d),
                      (0.3 + k + d, cy + 0.3 + k - d), (0.3 + k - d, cy + 0.3 + k + d)]
            stripe = [(u, v) for u, v in stripe if (u * u + (v - cy) ** 2) <= r * r * 1.2]
            if len(stripe) >= 3:
                plate(p, a.x, a.z - 0.07, stripe, (40, 40, 40))
        return
    plate(p, a.x, a.z - 0.05, disc_outline(0, cy, r), (30, 30, 220))
    plate(p, a.x, a.z - 0.06, disc_outline(0, cy, r * 0.74), (245, 245, 245))
    centre = p.point(a.x, cy, a.z - 0.07)
    if centre is not None:
        radius_px = p.px(r * 0.74, centre[2])
        if radius_px > 5:
            text = str(a.state.get("kmh", ""))
            font_scale = radius_px / 22.0
            thickness = max(1, int(radius_px / 8))
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
            org = (int(centre[0] - tw / 2), int(centre[1] + th / 2))
            cv2.putText(p.canvas.img, text, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (20, 20, 20), thickness,
                        cv2.LINE_AA)


def paint_destination(p: Paint, a: Actor) -> None:
    box(p, a.x, a.z, 0.0, 0.1, 0.1, 0.0, 3.4, (150, 150, 150))
    if p.cam.z >= a.z:
        return
    plate(p, a.x, a.z - 0.05, [(-0.8, 2.3), (0.8, 2.3), (0.8, 3.4), (-0.8, 3.4)], (160, 70, 10))
    cols, rows = 4, 3
    for i in range(cols):
        for j in range(rows):
            u0 = -0.7 + i * 1.4 / cols
            v0 = 2.4 + j * 0.9 / rows
            colour = (245, 245, 245) if (i + j) % 2 == 0 else (20, 20, 20)
            plate(p, a.x, a.z - 0.06, [(u0, v0), (u0 + 1.4 / cols, v0), (u0 + 1.4 / cols, v0 + 0.3), (u0, v0 + 0.3)], colour)


# --- road users ---------------------------------------------------------------------------------

def paint_pedestrian(p: Paint, a: Actor) -> None:
    fwd, right = axes(a.yaw)
    phase = 2 * math.pi * float(a.state.get("stride", 0.0)) / 2
    swing = 0.32 * math.sin(phase)
    x, z = a.x, a.z
    shadow(p, x, z, a.yaw, 0.7, 0.5)
    pants: Colour = (90, 50, 40)
    skin: Colour = (140, 175, 215)

    def at(f: float, r: float, y: float) -> tuple[float, float, float]:
        return x + f * fwd[0] + r * right[0], y, z + f * fwd[1] + r * right[1]

    for side, sgn in ((-0.1, 1), (0.1, -1)):
        p.limb(at(0, side, 0.92), at(sgn * swing, side, 0.05), 0.17, pants)
    p.limb(at(0, 0, 0.9), at(0.03, 0, 1.48), 0.42, a.colour)
    for side, sgn in ((-0.22, -1), (0.22, 1)):
        p.limb(at(0.03, side, 1.42), at(sgn * swing * 0.7, side, 0.95), 0.1, a.colour)
    head = p.point(*at(0.05, 0, 1.64))
    if head is not None:
        r = max(1.0, p.px(0.13, head[2]))
        p.canvas.disc(head[:2], r, skin, p.light)
        p.boxes.append((head[0] - r, head[1] - r, head[0] + r, head[1] + r))


def paint_cyclist(p: Paint, a: Actor) -> None:
    x, z = a.x, a.z
    phase = 2 * math.pi * float(a.state.get("pedal", 0.0))
    shadow(p, x, z, 0.0, 1.8, 0.5)
    dark: Colour = (35, 35, 35)
    p.limb((x, 0.0, z - 0.55), (x, 0.7, z - 0.55), 0.07, dark)
    p.limb((x, 0.0, z + 0.55), (x, 0.7, z + 0.55), 0.07, dark)
    p.limb((x, 0.35, z - 0.55), (x, 0.95, z - 0.2), 0.05, dark)
    p.limb((x, 0.95, z - 0.2), (x, 1.05, z + 0.45), 0.05, dark)
    p.limb((x - 0.25, 1.05, z + 0.45), (x + 0.25, 1.05, z + 0.45), 0.05, dark)
    for side, sgn in ((-0.13, 1), (0.13, -1)):
        knee_y = 0.78 + 0.14 * sgn * math.sin(phase)
        foot_y = 0.35 + 0.2 * sgn * math.sin(phase)
        p.limb((x + side, 1.0, z - 0.2), (x + side, knee_y, z + 0.1), 0.15, (60, 40, 30))
        p.limb((x + side, knee_y, z + 0.1), (x + side, foot_y, z - 0.05), 0.12, (60, 40, 30))
    p.limb((x, 1.0, z - 0.2), (x, 1.5, z + 0.2), 0.44, a.colour)
    for side in (-0.2, 0.2):
        p.limb((x + side, 1.45, z + 0.2), (x + side * 1.2, 1.05, z + 0.45), 0.09, a.colour)
    head = p.point(x, 1.7, z + 0.3)
    if head is not None:
        r = max(1.0, p.px(0.14, head[2]))
        p.canvas.disc(head[:2], r, (20, 200, 240), p.light)
    p.lamp(x, 0.85, z - 0.62, 0.07, RED_LAMP, 0.8 if p.look.lights_on else 0.0)


def paint_cone(p: Paint, a: Actor) -> None:
    billboard(p, a.x, a.z, [(-0.3, 0.0), (0.3, 0.0), (0.3, 0.06), (-0.3, 0.06)], (30, 30, 30))
    billboard(p, a.x, a.z, [(-0.22, 0.05), (0.22, 0.05), (0.03, 0.8), (-0.03, 0.8)], a.colour)
    band = [(-0.15, 0.32), (0.15, 0.32), (0.11, 0.47), (-0.11, 0.47)]
    billboard(p, a.x, a.z, band, (240, 240, 240))
    if p.look.lights_on:  # retro-reflective band catches the headlights
        _, right = axes(p.cam.yaw)
        uv = p.cam.project_polygon([(a.x + u * right[0], v, a.z + u * right[1]) for u, v in band])
        p.canvas.glow_poly(uv, (200, 200, 200), 0.25)


def paint_arrow_board(p: Paint, a: Actor) -> None:
    box(p, a.x, a.z, 0.0, 1.4, 1.7, 0.3, 0.95, (60, 90, 130))
    plate(p, a.x, a.z - 0.75, [(-1.1, 0.95), (1.1, 0.95), (1.1, 2.4), (-1.1, 2.4)], (25, 25, 25))
    if p.cam.z >= a.z - 0.75:
        return
    d = float(a.state.get("dir", -1))
    arrow = [(-0.75, 1.57), (0.2, 1.57), (0.2, 1.3), (0.85, 1.67), (0.2, 2.05), (0.2, 1.78), (-0.75, 1.78)]
    uv = p.cam.project_polygon([(a.x + d * u, v, a.z - 0.76) for u, v in arrow])
    if uv is not None:
        p.canvas.glow_poly(uv, AMBER, 1.0 if int(p.t * 2.5) % 2 == 0 else 0.5)


# --- scenery ------------------------------------------------------------------------------------

def paint_tree(p: Paint, a: Actor) -> None:
    h = float(a.state.get("h", 6.0))
    r = float(a.state.get("r", 2.0))
    box(p, a.x, a.z, 0.0, 0.35, 0.35, 0.0, h - r, (40, 65, 95))
    centre = p.point(a.x, h - r * 0.8, a.z)
    if centre is not None:
        rp = p.px(r, centre[2])
        p.canvas.disc(centre[:2], rp, a.colour, p.light)
        p.canvas.disc((centre[0] - rp * 0.25, centre[1] - rp * 0.25), rp * 0.55, scale(a.colour, 1.2), p.light)


def paint_post(p: Paint, a: Actor) -> None:
    box(p, a.x, a.z, 0.0, 0.18, 0.18, 0.0, 7.0, (125, 125, 130))


def paint_building(p: Paint, a: Actor) -> None:
    box(p, a.x, a.z, 0.0, float(a.state["l"]), float(a.state["w"]), 0.0, float(a.state["h"]), a.colour)


PAINTERS: dict[str, Callable[[Paint, Actor], None]] = {
    "car": paint_car,
    "emergency": paint_emergency,
    "traffic_light": paint_traffic_light,
    "sign_yield": paint_sign_yield,
    "sign_speed": paint_sign_speed,
    "destination": paint_destination,
    "pedestrian": paint_pedestrian,
    "cyclist": paint_cyclist,
    "cone": paint_cone,
    "arrow_board": paint_arrow_board,
    "tree": paint_tree,
    "post": paint_post,
    "building": paint_building,
}

MAX_DRAW_M = 200.0


def paint_actor(canvas: Canvas, cam: Camera, look: Look, t: float, actor: Actor) -> BBox | None:
    """Paint one actor; returns its on-screen box (clipped to the frame) or None if unseen."""
    forward = cam.forward_distance(actor.x, actor.z)
    lateral = cam.lateral_offset(actor.x, actor.z)
    if forward < NEAR_M - 6.0 or forward > MAX_DRAW_M or abs(lateral) > forward * 1.2 + 25:
        return None
    light = headlight(look, forward, lateral) if look.per_pixel_light else None
    p = Paint(canvas, cam, look, t, light, [])
    PAINTERS[actor.kind](p, actor)
    if not p.boxes:
        return None
    b = np.array(p.boxes)
    x0, y0 = max(0.0, b[:, 0].min()), max(0.0, b[:, 1].min())
    x1, y1 = min(float(cam.width), b[:, 2].max()), min(float(cam.height), b[:, 3].max())
    if x1 <= x0 or y1 <= y0:
        return None
    return float(x0), float(y0), float(x1), float(y1)
