"""Every network sees the face as its authors showed it (issue 32): on real photos, the crop each converted prior
receives inside the forward, cut from the loose canonical crop by `prior_crops`, is the crop `crop_geometry.cut_crops`
cuts from the original photo with that prior's own rule."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import tiny_vit_config

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.analysis.backends import TorchBackend
from etfuser_hf.analysis.crops import cut_canonical_crops
from etfuser_hf.priors.crop_plan import READS_68_LANDMARKS, FaceGeometry, image_bottom_grey
from etfuser_hf.models.encoders import crop_resampling, prepare_encoder_inputs
from etfuser_hf.priors import crop_geometry, crop_rules
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.face_detection import detect_and_align

PRIORS = ("age", "gender", "expression", "face_recognition", "face_landmarks")


@pytest.fixture(scope="module")
def model() -> ETFuserForImageClassification:
    dirs = ensure_face_priors(names=PRIORS + ("mtcnn",))
    torch.manual_seed(0)
    return ETFuserForImageClassification.from_priors_pretrained(
        priors={name: dirs[name] for name in PRIORS}, backbone=tiny_vit_config(image_size=112, patch_size=16),
        image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=3).eval()


def analyse(model, image: np.ndarray):
    """(the inputs each prior received, the backend's outputs, the face's geometry) for the best face of `image`."""
    found = detect_and_align([image])[0]
    faces = FaceGeometry.from_detections(found.boxes[:1], found.landmarks[:1], np.array([image.shape[:2]]),
                                         bottom_grey=image_bottom_grey([image]))
    canonical = cut_canonical_crops([image], [found.landmarks[:1]])[0]
    received = {}

    def keep(name):
        def hook(module, args, kwargs):
            received.setdefault(name, kwargs["pixel_values"])
        return hook

    hooks = [prior.register_forward_pre_hook(keep(name), with_kwargs=True)
             for name, prior in model.etfuser.priors.items()]
    try:
        pixel_values = np.ascontiguousarray(canonical.transpose(0, 3, 1, 2), dtype=np.float32) / 255
        outputs = TorchBackend(model)(pixel_values, faces)
    finally:
        for hook in hooks:
            hook.remove()
    return received, outputs, faces


def expected_crop(model, name: str, image: np.ndarray, faces: FaceGeometry, landmarks: np.ndarray) -> torch.Tensor:
    """The prior's crop cut from the original photo by its own rule, with its pipeline's bars or padding where it
    records them, as that prior's input."""
    geometry = crop_rules.crop_geometry_of(model.etfuser.priors[name].config)
    inputs = {"landmarks": landmarks if geometry["name"] in READS_68_LANDMARKS else faces.points,
              "boxes": faces.boxes, "image_sizes": faces.image_sizes}
    photo = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
    spec = model.config.priors[name]
    crop = crop_geometry.cut_crops(photo, crop_rules.crop_affines(geometry, **inputs), spec.image_size[0],
                                   antialias=geometry.get("antialias", False),
                                   windows=crop_rules.crop_windows(geometry, **inputs),
                                   resampling=crop_resampling(geometry))
    return prepare_encoder_inputs(crop, spec)


def test_each_prior_crop_in_the_forward_is_its_own_crop_of_the_astronaut(model):
    image = skimage.data.astronaut()
    received, outputs, faces = analyse(model, image)
    assert set(received) == set(PRIORS)  # every prior ran, the landmark net once (setdefault keeps the first)
    for name in PRIORS:
        spec = model.config.priors[name]
        expected = expected_crop(model, name, image, faces, outputs["image_landmarks"].astype(np.float64))
        assert received[name].shape == expected.shape
        # back in [0, 1] pixel units: the interpolation error of cutting from the 320 px canonical crop
        error = ((received[name] - expected) * torch.tensor(spec.image_std).view(1, -1, 1, 1) / spec.pixel_scale).abs()
        assert error.mean() < 0.015, (name, float(error.mean()))
        assert error.flatten().quantile(0.99) < 0.08, (name, float(error.flatten().quantile(0.99)))


def test_the_canonical_crop_holds_every_prior_crop_of_a_frontal_face(model):
    image = skimage.data.astronaut()
    _, outputs, faces = analyse(model, image)
    backend = TorchBackend(model)
    plan = backend.graph.plan
    affines = plan.affines(faces, outputs["image_landmarks"].astype(np.float64))
    size = crop_geometry.CANONICAL_CROP_SIZE
    for index, (name, geometry) in enumerate(plan.geometries.items()):
        crop_size = geometry.get("size", 112)
        corners = np.array([[0, 0], [crop_size, 0], [0, crop_size], [crop_size, crop_size]], np.float64)
        inverse = crop_geometry.invert_affines(affines[:, index])[0]
        in_canonical = corners @ inverse[:, :2].T + inverse[:, 2]
        assert (in_canonical >= 0).all() and (in_canonical <= size).all(), (name, in_canonical)


def test_landmark_readout_maps_back_through_the_landmark_nets_own_crop(model):
    image = skimage.data.astronaut()
    _, outputs, faces = analyse(model, image)
    landmarks = outputs["image_landmarks"][0]
    # face-api's eye centres land within a few pixels of MTCNN's eyes, its mouth corners of MTCNN's
    np.testing.assert_allclose(landmarks[36:42].mean(0), faces.points[0, 0], atol=6)
    np.testing.assert_allclose(landmarks[42:48].mean(0), faces.points[0, 1], atol=6)
    np.testing.assert_allclose(landmarks[48], faces.points[0, 3], atol=8)
    np.testing.assert_allclose(landmarks[54], faces.points[0, 4], atol=8)


def test_dlib_age_net_reads_grace_hopper_at_her_age_from_its_own_chip(model):
    cbook = pytest.importorskip("matplotlib.cbook")
    image = np.asarray(PIL.Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    _, outputs, _ = analyse(model, image)
    bins = np.asarray(model.etfuser.priors["age"].config.age_bins, np.float64)
    logits = outputs["readout.age"].astype(np.float64)
    age = (np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()) @ bins
    assert age[0] > 70  # 78 when photographed; the ArcFace template crop read her as about 40
