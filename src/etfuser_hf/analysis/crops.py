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

from ..priors.crop_geometry import CANONICAL_CROP_SIZE, antialias_samples, canonical_crop_affines, cut_crops
from ..priors.mtcnn import size_groups


def cut_canonical_crops(images: list[np.ndarray], points: list[np.ndarray], size: int = CANONICAL_CROP_SIZE,
                        max_pixels: int = 1 << 22) -> list[np.ndarray]:
    """The canonical crop of every face: `images` uint8 (H, W, 3), `points[i]` (faces, 5, 2) of image i -> one uint8
    (faces, size, size, 3) array per image (bilinear, zeros outside the image, antialiased where the face shrinks by
    more than 2x, as dlib's chips are).

    Same-sized images whose faces need the same antialiasing are stacked (at most `max_pixels` pixels per stack) and
    cut in one `cut_crops` call: each face's crop is the one it gets alone, and on a shared machine one parallel
    region per stack, not per image, is what keeps this cheap (one call per image cost more than the fused graph)."""
    import torch

    crops = [np.zeros((len(face_points), size, size, 3), np.uint8) for face_points in points]
    affines = [canonical_crop_affines(np.asarray(face_points, np.float64), size) if len(face_points) else None
               for face_points in points]
    with_faces = [index for index, image_affines in enumerate(affines) if image_affines is not None]
    for group in size_groups([images[index] for index in with_faces], max_pixels):
        by_samples: dict[int, list[int]] = {}
        for member in group:
            index = with_faces[member]
            by_samples.setdefault(antialias_samples(affines[index]), []).append(index)
        for members in by_samples.values():
            # a copy (frames may be read-only), as float for grid_sample
            stack = torch.from_numpy(np.stack([images[index] for index in members])).permute(0, 3, 1, 2).float()
            image_index = np.concatenate([np.full(len(affines[index]), row) for row, index in enumerate(members)])
            cut = cut_crops(stack, np.concatenate([affines[index] for index in members]), size, image_index,
                            antialias=True)
            cut = cut.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            for index, part in zip(members, np.split(cut, np.cumsum([len(affines[i]) for i in members])[:-1])):
                crops[index] = part
    return crops


__all__ = ["cut_canonical_crops"]
