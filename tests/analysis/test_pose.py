"""Head pose (`analysis/pose.py`): the batched numpy fit against OpenCV's `solvePnP`, which it replaces, and the
closed-form angles against scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from etfuser_hf.analysis.pose import GENERIC_FACE_3D, INTER_PUPIL_MM, camera_matrix, head_pose, project, rotation_angles


def solvepnp_pose(landmarks: np.ndarray, image_sizes: np.ndarray) -> np.ndarray:
    """(faces, 3) yaw, pitch, roll of `cv2.solvePnP` (iterative, from the same frontal start), one face at a time."""
    import cv2

    angles = []
    for points, (width, height) in zip(landmarks, image_sizes):
        camera = camera_matrix(width, height)
        eyes = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0))
        distance = camera[0, 0] * INTER_PUPIL_MM / eyes
        start = np.append((points[30] - camera[:2, 2]) * distance / camera[0, 0], distance)
        _, rvec, _ = cv2.solvePnP(GENERIC_FACE_3D, points, camera, None, rvec=np.zeros((3, 1)),
                                  tvec=start.reshape(3, 1), useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        roll, yaw, pitch = Rotation.from_matrix(cv2.Rodrigues(rvec)[0]).as_euler("ZYX", degrees=True)
        angles.append((yaw, pitch, roll))
    return np.array(angles)


def posed_faces(count: int, seed: int, width: int = 640, height: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """(landmarks (count, 68, 2), image sizes (count, 2)): shapes other than the generic one, within +-30 degrees,
    1 px of noise."""
    rng = np.random.default_rng(seed)
    camera, landmarks = camera_matrix(width, height), []
    for angles in rng.uniform(-30, 30, (count, 3)):
        shape = GENERIC_FACE_3D * rng.normal(1.0, 0.05, GENERIC_FACE_3D.shape) * [1, 1, rng.uniform(0.8, 1.2)]
        where = np.array([rng.uniform(-100, 100), rng.uniform(-60, 60), rng.uniform(400, 1500)])
        landmarks.append(project(shape, angles, where, camera) + rng.normal(0, 1.0, (68, 2)))
    return np.stack(landmarks), np.tile([width, height], (count, 1))


@pytest.mark.parametrize("width, height", [(640, 480), (256, 256)])
def test_batched_fit_gives_solvepnps_angles(width, height):
    landmarks, sizes = posed_faces(60, seed=3, width=width, height=height)
    np.testing.assert_allclose(head_pose(landmarks, sizes), solvepnp_pose(landmarks, sizes), atol=1e-3, rtol=0)


def test_each_face_is_fitted_on_its_own_and_bad_points_give_nan():
    landmarks, sizes = posed_faces(8, seed=4)
    alone = np.concatenate([head_pose(landmarks[i:i + 1], sizes[i:i + 1]) for i in range(8)])
    broken = landmarks.copy()
    broken[2, 5] = np.nan
    together = head_pose(broken, sizes)
    assert np.isnan(together[2]).all() and np.isfinite(np.delete(together, 2, axis=0)).all()
    np.testing.assert_allclose(np.delete(together, 2, axis=0), np.delete(alone, 2, axis=0), atol=1e-6)
    assert head_pose(np.zeros((0, 68, 2)), np.zeros((0, 2))).shape == (0, 3)
    # a degenerate face (every point on one spot) neither raises nor spoils the others of its batch
    degenerate = head_pose(np.concatenate([np.zeros((1, 68, 2)), landmarks[:2]]), sizes[:3])
    np.testing.assert_allclose(degenerate[1:], alone[:2], atol=1e-6)


def test_rotation_angles_are_scipys_zyx_euler_angles():
    rng = np.random.default_rng(5)
    truth = rng.uniform([-80, -170, -170], [80, 170, 170], (50, 3))  # yaw, pitch, roll away from gimbal lock
    matrices = Rotation.from_euler("ZYX", truth[:, [2, 0, 1]], degrees=True).as_matrix()
    np.testing.assert_allclose(rotation_angles(matrices), truth, atol=1e-9)
    np.testing.assert_allclose(rotation_angles(matrices[0]), truth[0], atol=1e-9)
