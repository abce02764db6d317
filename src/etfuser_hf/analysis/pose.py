"""Head pose (yaw, pitch, roll in degrees) from 68 iBUG landmarks in image pixels, by fitting a generic 3-D face
shape with OpenCV's `solvePnP` (iterative Levenberg-Marquardt on the reprojection error).

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
    """`(3, 3)` rotation -> (yaw, pitch, roll) degrees with `R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`."""
    from scipy.spatial.transform import Rotation

    roll, yaw, pitch = Rotation.from_matrix(rotation).as_euler("ZYX", degrees=True)
    return np.array([yaw, pitch, roll])


def head_pose(landmarks: np.ndarray, image_sizes: np.ndarray, shape: np.ndarray = GENERIC_FACE_3D) -> np.ndarray:
    """Yaw, pitch, roll in degrees `(faces, 3)` from `landmarks (faces, 68, 2)` in image pixels and each face's image
    `(width, height)` `image_sizes (faces, 2)`; NaN where the fit fails."""
    import cv2

    angles = np.full((len(landmarks), 3), np.nan)
    for face, (points, (width, height)) in enumerate(zip(landmarks, image_sizes)):
        points = np.ascontiguousarray(points, dtype=np.float64)
        if not np.isfinite(points).all():
            continue
        camera = camera_matrix(width, height)
        # start from a frontal face at the distance that gives the observed eye spacing
        eyes = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
        distance = camera[0, 0] * INTER_PUPIL_MM / max(eyes, 1e-6)
        centre = points[30]
        start_t = np.array([(centre[0] - camera[0, 2]) * distance / camera[0, 0],
                            (centre[1] - camera[1, 2]) * distance / camera[1, 1], distance])
        found, rvec, _ = cv2.solvePnP(shape, points, camera, None, rvec=np.zeros((3, 1)),
                                      tvec=start_t.reshape(3, 1), useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        if found:
            angles[face] = rotation_angles(cv2.Rodrigues(rvec)[0])
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
