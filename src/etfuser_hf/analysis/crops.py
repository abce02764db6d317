"""Every network's own crop of each detected face (issue 32), as `analyze` cuts it.

The model is fed one loose canonical crop per face (`crop_geometry.canonical_crop_affines`: the five MTCNN points on
the ArcFace template with room around it), and `prior_crops` tells the forward where, in that crop, each network's
authors cut their face (`crop_geometry`). Two rules read face-api's 68 landmarks (`dlib_chip`, `faceapi_aligned_box`),
so the analysis runs in two stages: face-api's landmark net first, on its own crop (`faceapi_box`, from the detector's
box), then every other network on crops placed by those landmarks; the landmark net's output is reused as that
prior's fusion tokens and readout, never run twice. Landmark readouts are mapped back to the image through the
landmark net's own crop (`faceapi_landmarks_to_image`). Where each network cuts (`CropPlan`) is shared with training
and lives in `priors/crop_plan.py`; this module cuts the canonical crops from the photos.
"""

from __future__ import annotations

import numpy as np

from ..priors.crop_geometry import CANONICAL_CROP_SIZE, canonical_crop_affines, cut_crops


def cut_canonical_crops(images: list[np.ndarray], points: list[np.ndarray],
                        size: int = CANONICAL_CROP_SIZE) -> list[np.ndarray]:
    """The canonical crop of every face: `images` uint8 (H, W, 3), `points[i]` (faces, 5, 2) of image i -> one uint8
    (faces, size, size, 3) array per image (bilinear, zeros outside the image, antialiased where the face shrinks by
    more than 2x, as dlib's chips are)."""
    import torch

    crops = []
    for image, face_points in zip(images, points):
        if not len(face_points):
            crops.append(np.zeros((0, size, size, 3), np.uint8))
            continue
        pixels = torch.from_numpy(np.array(image, np.float32)).permute(2, 0, 1)[None]  # a copy: frames may be read-only
        affines = canonical_crop_affines(np.asarray(face_points, np.float64), size)
        cut = cut_crops(pixels, affines, size, image_index=np.zeros(len(affines), np.int64), antialias=True)
        crops.append(cut.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return crops


__all__ = ["cut_canonical_crops"]
