"""Head pose (yaw, pitch, roll in degrees) from 68 iBUG landmarks in image pixels, by fitting a generic 3-D face
shape as OpenCV's `solvePnP` (SOLVEPNP_ITERATIVE) does: Levenberg-Marquardt on the squared reprojection error from a
frontal start, here in numpy for all faces of a batch at once (`_solve_pose`). On faces within +-30 degrees it gives
`solvePnP`'s angles within 1e-5 degrees (tests/analysis/test_pose.py); far outside (+-60 degrees, noisy points) it
can go on to a lower error where `solvePnP` stops after its 20 iterations.

The generic shape (`GENERIC_FACE_3D`) is this package's own: in the image plane, the mean of the converted face-api
landmark prior's 68 points over the 100 real faces of scikit-image's `lfw_subset` (LFW, mostly frontal), made
left-right symmetric and scaled to an inter-pupil distance of 63 mm (`FRONTAL_68_MM`); in depth, average adult
anthropometry (nose tip in front, eye corners about 30 mm behind it, mouth corners 28 mm, the jaw line curving back to
about 100 mm at the ears). The camera is the usual uncalibrated guess: focal length the
image's longer side in pixels, principal point at the image centre, no distortion.

Angles are those of the rotation taking the frontal face to the observed one, in camera axes (x right, y down, z away
from the camera), decomposed as `R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`: positive yaw turns the face towards the image's
left (the person's right), positive pitch tilts the face down, positive roll tilts the head clockwise in the image.
"""

from __future__ import annotations

import numpy as np

INTER_PUPIL_MM = 63.0


def _depths_mm() -> np.ndarray:
    """Depth of each iBUG point behind the nose tip, in millimetres (average adult; see the module docstring)."""
    depth = np.zeros(68)
    depth[0:17] = 100.0 - 85.0 * np.sin(np.pi * np.arange(17) / 16)  # jaw: ears (100) to chin (15)
    depth[17:22] = depth[22:27][::-1] = [38.0, 30.0, 24.0, 20.0, 19.0]  # brows, outer to inner
    depth[27:31] = [25.0, 17.0, 9.0, 0.0]  # nose bridge down to the tip
    depth[31:36] = [14.0, 9.0, 7.0, 9.0, 14.0]  # nostrils and the base of the nose
    depth[[36, 45]], depth[[39, 42]] = 35.0, 27.0  # outer and inner eye corners
    depth[[37, 38, 40, 41, 43, 44, 46, 47]] = 29.0  # eyelids
    depth[48:60] = [28.0, 20.0, 14.0, 12.0, 14.0, 20.0, 28.0, 21.0, 16.0, 14.0, 16.0, 21.0]  # outer lips
    depth[60:68] = [26.0, 17.0, 16.0, 17.0, 26.0, 18.0, 17.0, 18.0]  # inner lips
    return depth


# (x, y) millimetres of each iBUG point, nose tip at the origin, y down (see the module docstring; checked against the
# landmark prior by tests/analysis/test_pose.py)
FRONTAL_68_MM = np.array([
    (-75.2, -39.9), (-73.9, -19.9), (-70.6, -1.5), (-67.2, 15.2), (-60.6, 33.3), (-50.4, 48.1), (-38.5, 58.2), (-23.1, 67.8),
    (0.0, 73.7), (23.1, 67.8), (38.5, 58.2), (50.4, 48.1), (60.6, 33.3), (67.2, 15.2), (70.6, -1.5), (73.9, -19.9),
    (75.2, -39.9), (-57.9, -54.7), (-49.1, -59.9), (-37.8, -61.5), (-27.3, -60.4), (-18.2, -57.3), (18.2, -57.3), (27.3, -60.4),
    (37.8, -61.5), (49.1, -59.9), (57.9, -54.7), (0.0, -36.9), (0.0, -23.8), (0.0, -11.3), (0.0, 0.0), (-12.0, 6.4),
    (-6.9, 8.2), (0.0, 9.9), (6.9, 8.2), (12.0, 6.4), (-43.1, -39.7), (-36.6, -42.0), (-27.5, -42.4), (-19.0, -38.2),
    (-26.6, -35.7), (-36.1, -35.8), (19.0, -38.2), (27.5, -42.4), (36.6, -42.0), (43.1, -39.7), (36.1, -35.8), (26.6, -35.7),
    (-26.1, 29.9), (-16.9, 26.1), (-5.6, 22.7), (0.0, 24.0), (5.6, 22.7), (16.9, 26.1), (26.1, 29.9), (16.8, 37.1),
    (8.4, 40.6), (0.0, 41.6), (-8.4, 40.6), (-16.8, 37.1), (-24.3, 29.9), (-8.0, 28.9), (0.0, 28.8), (8.0, 28.9),
    (24.3, 29.9), (7.8, 32.6), (0.0, 33.3), (-7.8, 32.6),
])
GENERIC_FACE_3D = np.concatenate([FRONTAL_68_MM, _depths_mm()[:, None]], axis=1)  # (68, 3) millimetres, camera axes of a frontal face: x right, y down, z away


def camera_matrix(width: float, height: float) -> np.ndarray:
    """The uncalibrated pinhole guess `(3, 3)`: focal length `max(width, height)`, principal point at the centre."""
    focal = float(max(width, height))
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def rotation_angles(rotation: np.ndarray) -> np.ndarray:
    """Rotations `(..., 3, 3)` -> (yaw, pitch, roll) degrees `(..., 3)` with `R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`
    (scipy's `as_euler("ZYX")` in closed form, for many rotations at once)."""
    rotation = np.asarray(rotation, np.float64)
    yaw = np.arctan2(-rotation[..., 2, 0], np.hypot(rotation[..., 0, 0], rotation[..., 1, 0]))
    pitch = np.arctan2(rotation[..., 2, 1], rotation[..., 2, 2])
    roll = np.arctan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def _skew(vectors: np.ndarray) -> np.ndarray:
    """Cross-product matrices `(..., 3, 3)` of `vectors (..., 3)`: `_skew(a) @ b == np.cross(a, b)`."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    zero = np.zeros_like(x)
    return np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)


def _exp_rotations(steps: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: rotation vectors `(N, 3)` (radians) -> rotations `(N, 3, 3)`."""
    angle = np.linalg.norm(steps, axis=-1)[:, None, None]
    safe = np.where(angle > 1e-12, angle, 1.0)
    axis = _skew(steps) / safe
    # below 1e-12 rad the first-order term is exact in float64
    sine = np.where(angle > 1e-12, np.sin(angle), angle)
    return np.eye(3) + sine * axis + np.where(angle > 1e-12, 1 - np.cos(angle), 0.0) * axis @ axis


def _reprojection(shape: np.ndarray, rotations: np.ndarray, translations: np.ndarray, focal: np.ndarray,
                  centre: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(residuals (N, K, 2) in pixels, the points in camera axes (N, K, 3), rotated shape (N, K, 3)) of `shape`
    (K, 3) under rotations (N, 3, 3) and translations (N, 3), seen by cameras of `focal` (N,) and `centre` (N, 2)."""
    rotated = np.einsum("nij,kj->nki", rotations, shape)
    camera = rotated + translations[:, None]
    pixels = focal[:, None, None] * camera[..., :2] / camera[..., 2:] + centre[:, None]
    return pixels - points, camera, rotated


def _solve_pose(shape: np.ndarray, points: np.ndarray, focal: np.ndarray, centre: np.ndarray,
                translations: np.ndarray, iterations: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on the summed squared reprojection error of all faces at once, each face on its own (N
    independent 6-parameter problems solved side by side: batched 6x6 solves instead of one `solvePnP` call per face).
    Starts from a frontal face at `translations` (N, 3); rotations are updated as `exp(step) @ R`. Returns (rotations
    (N, 3, 3), the final squared error (N,))."""
    count = len(points)
    rotations = np.tile(np.eye(3), (count, 1, 1))
    residuals, camera, rotated = _reprojection(shape, rotations, translations, focal, centre, points)
    cost = (residuals ** 2).sum(axis=(1, 2))
    damping = np.full(count, 1e-3)
    active = np.arange(count)  # the faces still moving: each step works on those only
    for _ in range(iterations):
        if not len(active):
            break
        cam, rot, f = camera[active], rotated[active], focal[active, None]
        # d pixel / d camera point (n, K, 2, 3), then d camera point / d (rotation step, translation) (n, K, 3, 6)
        inverse_depth = 1.0 / cam[..., 2]
        zero = np.zeros_like(inverse_depth)
        du = np.stack([f * inverse_depth, zero, -f * cam[..., 0] * inverse_depth ** 2], -1)
        dv = np.stack([zero, f * inverse_depth, -f * cam[..., 1] * inverse_depth ** 2], -1)
        by_point = np.concatenate([-_skew(rot), np.broadcast_to(np.eye(3), rot.shape + (3,))], axis=-1)
        jacobian = (np.stack([du, dv], -2) @ by_point).reshape(len(active), -1, 6)
        normal = jacobian.transpose(0, 2, 1) @ jacobian
        gradient = jacobian.transpose(0, 2, 1) @ residuals[active].reshape(len(active), -1, 1)
        diagonal = np.einsum("nii->ni", normal)
        # the absolute floor keeps degenerate faces (all points on one spot) solvable: their fit fails, not the batch
        floor = 1e-12 * diagonal.max(-1, keepdims=True) + 1e-300
        damped = normal + ((damping[active, None] * diagonal + floor)[..., None] * np.eye(6))
        step = -np.linalg.solve(damped, gradient)[..., 0]
        trial_rotations = _exp_rotations(step[:, :3]) @ rotations[active]
        trial_translations = translations[active] + step[:, 3:]
        trial = _reprojection(shape, trial_rotations, trial_translations, focal[active], centre[active],
                              points[active])
        trial_cost = (trial[0] ** 2).sum(axis=(1, 2))
        better = np.isfinite(trial_cost) & (trial_cost < cost[active])
        # settled: the error no longer changes beyond float64 rounding, or the step is below a nanometre/nanoradian,
        # or the damping has grown so large that no step helps
        settled = (np.abs(cost[active] - trial_cost) <= 1e-13 * cost[active]) | (np.abs(step).max(-1) < 1e-9) \
            | (~better & (damping[active] > 1e10))
        moved = active[better]
        rotations[moved], translations[moved] = trial_rotations[better], trial_translations[better]
        residuals[moved], camera[moved], rotated[moved] = trial[0][better], trial[1][better], trial[2][better]
        cost[moved] = trial_cost[better]
        damping[active] = np.where(better, damping[active] / 10, damping[active] * 10)
        active = active[~settled]
    return rotations, cost


def head_pose(landmarks: np.ndarray, image_sizes: np.ndarray, shape: np.ndarray = GENERIC_FACE_3D) -> np.ndarray:
    """Yaw, pitch, roll in degrees `(faces, 3)` from `landmarks (faces, 68, 2)` in image pixels and each face's image
    `(width, height)` `image_sizes (faces, 2)`; NaN where the fit fails (non-finite landmarks, a
    non-finite error).

    The fit is `solvePnP`'s (the minimum of the squared reprojection error, by Levenberg-Marquardt from a frontal face
    at the distance that gives the observed eye spacing), run for all faces at once in numpy: one `cv2.solvePnP` call
    per face cost about 2 ms, most of the pose columns' time in a bulk analysis."""
    landmarks = np.asarray(landmarks, np.float64).reshape(-1, len(shape), 2)
    image_sizes = np.asarray(image_sizes, np.float64).reshape(-1, 2)
    angles = np.full((len(landmarks), 3), np.nan)
    good = np.isfinite(landmarks).all(axis=(1, 2))
    if not good.any():
        return angles
    points, sizes = landmarks[good], image_sizes[good]
    focal, centre = sizes.max(axis=1), sizes / 2.0  # `camera_matrix`'s uncalibrated guess
    # start from a frontal face at the distance that gives the observed eye spacing
    eyes = np.linalg.norm(points[:, 36:42].mean(1) - points[:, 42:48].mean(1), axis=-1)
    distance = focal * INTER_PUPIL_MM / np.maximum(eyes, 1e-6)
    start = np.concatenate([(points[:, 30] - centre) * (distance / focal)[:, None], distance[:, None]], axis=1)
    rotations, cost = _solve_pose(np.asarray(shape, np.float64), points, focal, centre, start)
    found = rotation_angles(rotations)
    found[~(np.isfinite(cost) & np.isfinite(found).all(-1))] = np.nan
    angles[good] = found
    return angles


def project(shape: np.ndarray, angles: np.ndarray, translation: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Pixels `(68, 2)` of `shape (68, 3)` rotated by (yaw, pitch, roll) degrees and moved by `translation (3,)`:
    what `head_pose` inverts (used to check it on faces at known rotations)."""
    from scipy.spatial.transform import Rotation

    yaw, pitch, roll = angles
    rotation = Rotation.from_euler("ZYX", [roll, yaw, pitch], degrees=True).as_matrix()
    points = shape @ rotation.T + translation
    pixels = points @ camera.T
    return pixels[:, :2] / pixels[:, 2:]


__all__ = ["FRONTAL_68_MM", "GENERIC_FACE_3D", "camera_matrix", "head_pose", "project", "rotation_angles"]
