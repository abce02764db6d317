"""Face geometry shared by the synthetic generator and mask synthesis: 68 iBUG landmarks of a frontal face per
expression and age group, and head-pose rotation."""

from __future__ import annotations

import math

import numpy as np

# Per expression: mouth curvature (+ smile), mouth opening, mouth half-width, brow raise, brow tilt (+ inner end
# down), eye opening. Means only: every sample adds jitter (see `face_landmarks`).
_EXPRESSION_GEOMETRY = {
    "angry": (-0.010, 0.004, 0.080, -0.020, 0.030, 0.75),
    "disgust": (-0.018, 0.010, 0.070, -0.010, 0.015, 0.65),
    "fear": (-0.006, 0.030, 0.085, 0.020, -0.020, 1.25),
    "happy": (0.030, 0.012, 0.105, 0.004, 0.000, 0.85),
    "sad": (-0.026, 0.002, 0.085, 0.006, -0.030, 0.85),
    "surprise": (0.000, 0.070, 0.070, 0.035, -0.005, 1.35),
    "neutral": (0.000, 0.000, 0.090, 0.000, 0.000, 1.00),
}


def ellipse_arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float, count: int) -> np.ndarray:
    angles = np.linspace(start, stop, count)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def face_landmarks(expression: str, age_group: int, rng: np.random.Generator) -> np.ndarray:
    """68 iBUG landmarks (68, 2) of a frontal face in a unit-square frame (face centre near (0.5, 0.5)), for one
    expression and age group; identity and expression intensity are drawn from `rng`."""
    curve, opening, half_width, brow_raise, brow_tilt, eye_open = _EXPRESSION_GEOMETRY[expression]
    jitter = lambda scale: rng.normal(0.0, scale)  # noqa: E731
    intensity = rng.uniform(0.5, 1.3)  # weak to strong displays: weak ones drift towards neutral
    curve, opening = curve * intensity + jitter(0.012), max(0.0, opening * intensity + jitter(0.012))
    half_width = 0.09 + (half_width - 0.09) * intensity + jitter(0.010)
    brow_raise, brow_tilt = brow_raise * intensity + jitter(0.010), brow_tilt * intensity + jitter(0.012)
    eye_open = max(0.3, 1.0 + (eye_open - 1.0) * intensity + jitter(0.18))
    child, senior = age_group == 0, age_group == 3
    face_w = (0.34 if child else 0.31) + jitter(0.015)
    face_h = (0.40 if child else 0.45 if senior else 0.44) + jitter(0.015)
    eye_y = (0.50 if child else 0.46) + jitter(0.01)
    eye_dx = 0.13 + jitter(0.008)
    eye_rx = (0.055 if child else 0.048) + jitter(0.004)
    eye_ry = 0.022 * eye_open * (1.15 if child else 0.9 if senior else 1.0)

    points = np.zeros((68, 2))
    points[0:17] = ellipse_arc(0.5, 0.47, face_w, face_h, math.pi, 0.0, 17)  # jaw: lower half-oval, ear to ear via chin
    for side, first in ((-1, 17), (1, 22)):  # brows: outer -> inner on the left, inner -> outer on the right
        xs = 0.5 - np.linspace(0.21, 0.05, 5) if side < 0 else 0.5 + np.linspace(0.05, 0.21, 5)
        inner = (xs - 0.5) * side  # 0.05 (inner end) .. 0.21 (outer end)
        arch = 0.012 * np.sin(np.pi * (inner - 0.05) / 0.16)
        points[first : first + 5] = np.stack([xs, eye_y - 0.075 - brow_raise - arch + brow_tilt * (0.21 - inner) / 0.16], 1)
    points[27:31] = np.stack([np.full(4, 0.5), np.linspace(eye_y - 0.01, eye_y + 0.11, 4)], axis=1)
    points[31:36] = np.stack([np.linspace(0.455, 0.545, 5), eye_y + 0.135 + np.array([0, 0.008, 0.012, 0.008, 0])], 1)
    for centre_x, first in ((0.5 - eye_dx, 36), (0.5 + eye_dx, 42)):  # eyes: corner, upper lid, corner, lower lid
        upper = ellipse_arc(centre_x, eye_y, eye_rx, eye_ry, math.pi, 2 * math.pi, 4)
        lower = ellipse_arc(centre_x, eye_y, eye_rx, eye_ry * 0.8, 0.0, math.pi, 4)[1:3]
        points[first : first + 6] = np.vstack([upper, lower])
    mouth_y = eye_y + 0.23 - (0.02 if child else 0.0)
    t = np.linspace(-1.0, 1.0, 7)
    upper_lip = np.stack([0.5 + half_width * t, mouth_y - curve * t**2 - 0.012 * np.cos(t * np.pi / 2)], 1)
    lower_t = np.linspace(1.0, -1.0, 7)[1:-1]
    lower_lip = np.stack([0.5 + half_width * 0.9 * lower_t,
                          mouth_y - curve * lower_t**2 + opening + 0.02 * np.cos(lower_t * np.pi / 2)], 1)
    points[48:55], points[55:60] = upper_lip, lower_lip
    inner_t = np.linspace(-0.7, 0.7, 5)
    points[60:65] = np.stack([0.5 + half_width * inner_t, mouth_y - curve * inner_t**2 + 0.002], 1)
    points[65:68] = np.stack([0.5 + half_width * np.array([0.45, 0.0, -0.45]),
                              mouth_y - curve * np.array([0.2, 0.0, 0.2]) + opening + 0.002], 1)
    return points


def apply_head_pose(points: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotates frontal landmarks (unit frame, face centre (0.5, 0.5)) by a head pose in degrees, orthographically, with
    a shallow depth profile (nose forward, jaw back) so that yaw and pitch shift features realistically."""
    centred = points - 0.5
    depth = 0.12 * np.exp(-((centred**2).sum(axis=1)) / 0.03) - 0.04 * (np.arange(len(points)) < 17)
    xyz = np.concatenate([centred, depth[:, None]], axis=1)
    y, p, r = np.radians([yaw, pitch, roll])
    rotate_y = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rotate_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rotate_z = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return (xyz @ (rotate_z @ rotate_x @ rotate_y).T)[:, :2] + 0.5
