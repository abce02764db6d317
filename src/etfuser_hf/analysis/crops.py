"""Every network's own crop of each detected face (issue 32), as `analyze` cuts it.

The model is fed one loose canonical crop per face (`crop_geometry.canonical_crop_affines`: the five MTCNN points on
the ArcFace template with room around it), and `prior_crops` tells the forward where, in that crop, each network's
authors cut their face (`crop_geometry`). Two rules read face-api's 68 landmarks (`dlib_chip`, `faceapi_aligned_box`),
so the analysis runs in two stages: face-api's landmark net first, on its own crop (`faceapi_box`, from the detector's
box), then every other network on crops placed by those landmarks; the landmark net's output is reused as that
prior's fusion tokens and readout, never run twice. Landmark readouts are mapped back to the image through the
landmark net's own crop (`faceapi_landmarks_to_image`). Where each network cuts (`CropPlan`) is shared with training
and lives in `priors/crop_plan.py`; the canonical crops are cut from the photos by `priors/crop_warp.py` (`warp_crops`)
and the first stage is `priors/landmark_stage.py` (`LandmarkStage`), shared with training's alignment step
(`data/alignment.py`); this module picks the first stage's net (`landmark_stage`); `backends.py` runs both stages.
dlib's chip is placed as the original places it, by dlib's 5-point predictor on the photo (`dlib_chip_predictor`,
`dlib_points`, run at detection): face-api's 68 landmarks put its five points 1-5 px away, and the dlib age net reads
the astronaut up to 12 years apart for that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..models.configuration_etfuser import EncoderSpec
from ..priors.crop_plan import LANDMARK_MODEL_TYPE, CropPlan
from ..priors.dlib_shape_predictor import DlibShapePredictor, converted_shape_predictor
from ..priors.crop_warp import arcface_crops, cut_canonical_crops, warp_crops
from ..priors.landmark_stage import LandmarkStage, converted_landmark_stage

if TYPE_CHECKING:
    from ..models.modeling_etfuser import ETFuserForImageClassification
    from .extras import Companion


def landmark_stage(model: ETFuserForImageClassification, companions: tuple[Companion, ...],
                   needs_landmarks: bool) -> tuple[str | None, LandmarkStage | None]:
    """(its name among the networks, the stage) of the landmark net the analysis runs first: the fused prior, else
    the pose companion's net, else (where a crop rule reads 68 landmarks) the converted face-api net on its own."""
    for name, prior in model.etfuser.priors.items():
        if prior.config.model_type == LANDMARK_MODEL_TYPE:
            return name, LandmarkStage(prior, model.config.priors[name], fused=True)
    for companion in companions:
        if companion.prior is not None and companion.config.model_type == LANDMARK_MODEL_TYPE:
            return f"companion.{companion.extra}", LandmarkStage(companion.prior, EncoderSpec(config=companion.config),
                                                                 fused=False)
    if not needs_landmarks:
        return None, None
    return "locator", converted_landmark_stage()


def dlib_chip_predictor(model: ETFuserForImageClassification,
                        companions: tuple[Companion, ...]) -> DlibShapePredictor | None:
    """The converted 5-point predictor where a network of the analysis cuts dlib's chip (`CropPlan.needs_dlib_points`),
    else None."""
    return converted_shape_predictor() if CropPlan.for_graph(model, companions).needs_dlib_points else None


def dlib_points(predictor: DlibShapePredictor | None, images: list[np.ndarray],
                found: list[tuple]) -> np.ndarray | None:
    """(faces, 5, 2) the predictor's points for every face of `found` (`detect_faces`' (boxes, scores, points) per image
    of `images`), in order, in the rectangles MTCNN's points give (`rectangles_from_mtcnn`); None without predictor."""
    return None if predictor is None else predictor.predict_from_mtcnn(images, [points for _, _, points in found])


__all__ = ["LandmarkStage", "arcface_crops", "cut_canonical_crops", "dlib_chip_predictor", "dlib_points",
           "landmark_stage", "warp_crops"]
