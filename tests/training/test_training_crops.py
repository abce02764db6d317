"""Training feeds every network its own crop of the face (issue 32, item 3): the synthetic faces' known landmarks place,
through the model's `CropPlan`, the crop each network's authors cut, in the collator's batches (online priors and the
canonical model), in the prior-feature cache and in the distillation teacher; the same rules `analyze` applies behind
MTCNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.face_crops import face_crops
from etfuser_hf.data.face_crops import landmark_labels_in_frame, landmarks_in_crop
from etfuser_hf.data.feature_cache import PriorFeatureCache, feature_column
from etfuser_hf.data.synthetic_faces import EXPRESSIONS
from etfuser_hf.models.encoders import crop_resampling, prepare_encoder_inputs
from etfuser_hf.models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX
from etfuser_hf.priors.crop_geometry import cut_crops
from etfuser_hf.priors.crop_rules import crop_affines, crop_geometry_of, crop_windows
from etfuser_hf.priors.crop_plan import (
    READS_68_LANDMARKS,
    CropPlan,
    FaceGeometry,
    detector_boxes_from_landmarks,
)
from etfuser_hf.priors.face_detection import detect_and_align
from etfuser_hf.training.run.distillation import CanonicalTeacher, Distillation
from crop_fixtures import PRIORS, SIZE, faces, model, prior_dirs, processor  # noqa: F401 (fixtures)


def rows_of(faces) -> list[dict]:
    return [faces[index] for index in range(len(faces))]


def expected_crop(model, name: str, image: torch.Tensor, landmarks: np.ndarray) -> torch.Tensor:
    """Network `name`'s crop of one face, cut from the image by its crop rule on the face's own landmarks (pixels),
    with its original pipeline's bars or padding (`crop_windows`) where the rule records them."""
    config = model.config.backbone.config if name == BACKBONE_CROP_KEY else model.etfuser.priors[name].config
    geometry = crop_geometry_of(config)
    box = detector_boxes_from_landmarks(landmarks[None])
    five = FaceGeometry.from_landmarks(landmarks[None], (SIZE, SIZE), (SIZE, SIZE)).points
    inputs = {"landmarks": landmarks[None] if geometry["name"] in READS_68_LANDMARKS else five, "boxes": box,
              "image_sizes": (SIZE, SIZE)}
    spec = model.config.backbone if name == BACKBONE_CROP_KEY else model.config.priors[name]
    return cut_crops(image[None], crop_affines(geometry, **inputs), spec.image_size[0],
                     windows=crop_windows(geometry, **inputs), resampling=crop_resampling(geometry))


def test_collator_gives_every_network_its_own_crop_of_the_training_face(model, faces, processor):
    collator = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks")
    batch = collator(rows_of(faces))
    crops = batch["prior_crops"]
    # face-api's two crops (its bars), fer's box (its padding: the FER canonical model) and dlib's chip (the image,
    # whose scale its resampling reads) come with their windows
    windowed = {"face_recognition", "face_landmarks", "age", BACKBONE_CROP_KEY}
    assert set(crops) == {*PRIORS, BACKBONE_CROP_KEY} | {name + WINDOW_SUFFIX for name in windowed}
    affine_keys = [name for name in crops if not name.endswith(WINDOW_SUFFIX)]
    assert all(crops[name].shape == (len(faces), 2, 3) and crops[name].dtype == torch.float32 for name in affine_keys)
    assert all(crops[name + WINDOW_SUFFIX].shape == (len(faces), 17) for name in windowed)
    # what each network reads in the forward is its rule's crop of the face, not the whole image resized
    landmarks = np.asarray(faces[0]["landmarks"], np.float64) * SIZE
    for name in affine_keys:
        spec = model.config.backbone if name == BACKBONE_CROP_KEY else model.config.priors[name]
        windows = crops.get(name + WINDOW_SUFFIX)
        fed = prepare_encoder_inputs(batch["pixel_values"][:1], spec, crops[name][:1],
                                     None if windows is None else windows[:1])
        expected = prepare_encoder_inputs(expected_crop(model, name, batch["pixel_values"][0], landmarks), spec)
        torch.testing.assert_close(fed, expected, atol=2e-3, rtol=0)
        whole = prepare_encoder_inputs(batch["pixel_values"][:1], spec)
        assert (fed - whole).abs().mean() > 0.02, f"{name} reads the whole image"
    # different rules, different crops: the dlib chip is not face-api's recognition square
    assert not torch.allclose(crops["age"], crops["face_recognition"])


def test_the_training_crops_match_the_crops_behind_the_detector(model, faces, processor):
    """On a synthetic face MTCNN finds, the crops placed by the face's known landmarks (training) and by MTCNN's box
    and points (analyze) cover nearly the same face: the detector box rule is fitted to MTCNN."""
    plan = CropPlan.for_model(model)
    image = np.asarray(faces[0]["image"].convert("RGB"))
    found = detect_and_align(image, output_size=SIZE)[0]
    assert found.found
    landmarks = np.asarray(faces[0]["landmarks"], np.float64)[None] * SIZE
    training = plan.affines(FaceGeometry.from_landmarks(landmarks, (SIZE, SIZE), (SIZE, SIZE)), landmarks)
    detected = FaceGeometry(found.boxes[:1].astype(np.float64), found.landmarks[:1].astype(np.float64),
                            np.array([[SIZE, SIZE]], np.float64), np.array([[[1.0, 0, 0], [0, 1.0, 0]]]))
    behind_detector = plan.affines(detected, landmarks)  # the 68 points as face-api's net would give them
    for index, name in enumerate(plan.networks):
        spec = model.config.backbone if name == BACKBONE_CROP_KEY else model.config.priors[name]
        centre = np.full(2, spec.image_size[0] / 2.0)
        # each crop's centre and side, in image pixels, agree whichever way the crop was placed
        placed = [(np.linalg.solve(a[0, index, :, :2], centre - a[0, index, :, 2]),
                   spec.image_size[0] / np.sqrt(abs(np.linalg.det(a[0, index, :, :2]))))
                  for a in (training, behind_detector)]
        (centre_a, side_a), (centre_b, side_b) = placed
        assert np.linalg.norm(centre_a - centre_b) < 0.06 * side_a, (name, centre_a, centre_b)
        assert abs(side_a / side_b - 1) < 0.15, (name, side_a, side_b)


def test_cache_features_come_from_each_priors_own_crop(model, faces, processor, tmp_path):
    reader = ETFuserForImageClassification.from_priors_pretrained(
        priors={name: model.etfuser.priors[name] for name in PRIORS}, backbone=None, fusion_mode="priors_only",
        image_size=SIZE, hidden_size=32, num_attention_heads=4, num_labels=2)
    plain = PriorFeatureCache(reader, processor, tmp_path / "plain")
    cropped = PriorFeatureCache(reader, processor, tmp_path / "cropped", geometry_column="landmarks")
    assert plain.key(faces) != cropped.key(faces)
    moved = faces.map(lambda row: {"landmarks": (np.asarray(row["landmarks"]) + 0.01).tolist()})
    assert cropped.key(moved) != cropped.key(faces), "moved landmarks must not read a stale cache"

    cached = cropped(faces)
    pixel_values = processor(list(faces["image"]), return_tensors="pt")["pixel_values"]
    crops = face_crops(np.asarray(list(faces["landmarks"])), CropPlan.for_model(reader), (SIZE, SIZE))
    with torch.inference_mode():
        expected = reader.etfuser.extract_prior_features(pixel_values, prior_crops=crops)
        whole = reader.etfuser.extract_prior_features(pixel_values)
    for name in PRIORS:
        stored = torch.tensor(np.asarray(cached[feature_column(name)], np.float32))
        torch.testing.assert_close(stored, expected[name].float(), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(stored, whole[name].float(), atol=1e-3)


def test_cached_priors_do_not_run_so_only_the_canonical_model_gets_a_crop(model, faces, processor, tmp_path):
    collator = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks")
    with_columns = faces.map(lambda row: {feature_column(name): np.zeros((1, 4), np.float32) for name in PRIORS})
    view = collator.view(with_columns)
    assert "landmarks" in view.column_names
    batch = collator([view[index] for index in range(len(view))])
    assert set(batch["prior_crops"]) == {BACKBONE_CROP_KEY, BACKBONE_CROP_KEY + WINDOW_SUFFIX}
    assert set(batch["prior_features"]) == set(PRIORS)
    # the Trainer's call: the model accepts the batch as keyword arguments
    with torch.inference_mode():
        outputs = model(**{key: value for key, value in batch.items() if key != "prior_features"})
    assert outputs.logits.shape == (len(faces), 7)


def test_a_classification_batch_from_cached_priors_without_pixels_needs_no_landmarks(model, faces, processor):
    """A priors-only model fed from the cache reads neither pixels nor crops, so a classification task's view drops
    the landmarks column and its batches must not ask for it (the CI run's KeyError: 'landmarks' in --multitask)."""
    collator = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks", include_pixel_values=False)
    with_columns = faces.map(lambda row: {feature_column(name): np.zeros((1, 4), np.float32) for name in PRIORS})
    view = collator.view(with_columns)
    assert "landmarks" not in view.column_names and "image" not in view.column_names
    batch = collator([view[index] for index in range(len(view))])
    assert set(batch) == {"labels", "prior_features"} and batch["labels"].shape == (len(faces),)


def test_distillation_teacher_reads_the_canonical_models_crop(model, faces, processor, prior_dirs):
    teacher = CanonicalTeacher.from_pretrained(prior_dirs["expression"], EXPRESSIONS, model.config.backbone,
                                               Distillation(weight=1.0))
    collator = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks")
    batch = collator(rows_of(faces))
    crop, windows = batch["prior_crops"][BACKBONE_CROP_KEY], batch["prior_crops"][BACKBONE_CROP_KEY + WINDOW_SUFFIX]
    with torch.inference_mode():
        on_crop = teacher.logits(batch["pixel_values"], crop, windows)
        expected = teacher.network(
            pixel_values=prepare_encoder_inputs(batch["pixel_values"], model.config.backbone, crop, windows)).logits
        whole = teacher.logits(batch["pixel_values"])
    torch.testing.assert_close(on_crop, expected.index_select(-1, teacher.class_index))
    assert not torch.allclose(on_crop, whole)


def test_face_crops_of_a_fer_crop_need_the_frames_for_its_padding_grey(model, faces):
    """fer pads with the grey of the image's bottom rows: without the frames its window cannot be made, and the error
    says so; with them the window's fill is that grey in R, G and B."""
    landmarks = np.asarray(list(faces["landmarks"]))
    with pytest.raises(ValueError, match="network 'backbone' pads its crop with the grey of the image's bottom rows"):
        face_crops(landmarks, CropPlan.for_model(model), (SIZE, SIZE))
    frames = torch.rand(len(faces), 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    rows = face_crops(landmarks, CropPlan.for_model(model), (SIZE, SIZE), pixel_values=frames)[
        BACKBONE_CROP_KEY + WINDOW_SUFFIX]
    grey = (frames[:, :, -2:].mean(dim=(-2, -1)) * torch.tensor([0.299, 0.587, 0.114])).sum(-1)
    torch.testing.assert_close(rows[:, 14:], grey[:, None].expand(-1, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(rows[:, :6], torch.tensor([1.0, 0, 0, 0, 1, 0]).expand(len(faces), 6))  # the frame


def test_face_crops_refuses_malformed_landmarks(model):
    with pytest.raises(ValueError, match=r"landmarks: expected finite \(batch, 68, 2\)"):
        face_crops(np.zeros((2, 5, 2)), CropPlan.for_model(model), (SIZE, SIZE))
    with pytest.raises(ValueError, match="landmarks: expected finite"):
        face_crops(np.full((1, 68, 2), np.nan), CropPlan.for_model(model), (SIZE, SIZE))


def test_evaluate_on_synthetic_faces_reads_the_training_crops(model, faces, processor):
    """`etfuser evaluate` on the synthetic default hands the model the crops training gave it."""
    from etfuser_hf.hub.evaluation import EvaluationTarget, score_dataset

    seen = []

    class Recording:
        config, etfuser = model.config, model.etfuser

        def __call__(self, **inputs):
            seen.append(inputs)
            return model(**inputs)

    target = EvaluationTarget("expression", "single_label_classification", list(range(7)))
    summary = score_dataset(Recording(), processor, faces, target, "synthetic", lambda *args: None,
                            geometry_column="landmarks")
    assert summary["num_samples"] == len(faces)
    pixel_values = processor(list(faces["image"]), return_tensors="pt")["pixel_values"]
    expected = face_crops(np.asarray(list(faces["landmarks"])), CropPlan.for_model(model), (SIZE, SIZE),
                          pixel_values=pixel_values)
    assert set(seen[0]["prior_crops"]) == set(expected)
    for name, affines in expected.items():
        torch.testing.assert_close(seen[0]["prior_crops"][name], affines)


def test_landmark_labels_are_mapped_into_the_frame_the_model_predicts_in(model, faces, processor):
    """A landmarks task's canonical model sees its own crop, so its labels are given in [0, 1] of that crop; the
    inter-ocular NME is the same in either frame (the crop is a similarity of the image)."""
    from etfuser_hf.models.losses import normalized_mean_error

    crop_size = tuple(model.config.backbone.image_size)
    collator = FaceCollator(processor, "landmarks", 0, problem_type="landmarks", crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks")
    batch = collator(rows_of(faces))
    image_frame = torch.tensor(np.asarray(list(faces["landmarks"])), dtype=torch.float32)
    affines = batch["prior_crops"][BACKBONE_CROP_KEY].double()
    # back through the crop's inverse: the image-frame labels again
    crop_pixels = batch["labels"].double() * crop_size[0]
    linear = torch.linalg.inv(affines[:, :, :2])
    back = (crop_pixels - affines[:, None, :, 2]) @ linear.transpose(1, 2) / SIZE
    torch.testing.assert_close(back.float(), image_frame, atol=1e-5, rtol=0)
    assert not torch.allclose(batch["labels"], image_frame, atol=0.02)
    noise = torch.randn_like(image_frame) * 0.01
    # the same displacement measured in both frames
    moved = landmarks_in_crop(image_frame + noise, batch["prior_crops"][BACKBONE_CROP_KEY], (SIZE, SIZE), crop_size)
    torch.testing.assert_close(normalized_mean_error(moved, batch["labels"], (36, 45)),
                               normalized_mean_error(image_frame + noise, image_frame, (36, 45)), rtol=1e-3, atol=1e-6)


def test_a_model_without_canonical_model_predicts_landmarks_in_the_arcface_crop_of_the_face(prior_dirs, faces,
                                                                                          processor):
    """A priors-only model reads the face only through its priors' crops, so its landmark labels are given in a
    face-centred frame that needs no network, the ArcFace template crop of the face's five points: placed like that
    crop, not like the image, and the same whether or not the collator feeds pixels (cached priors need none)."""
    from etfuser_hf.models.losses import normalized_mean_error

    torch.manual_seed(0)
    priors_only = ETFuserForImageClassification.from_priors_pretrained(
        priors={name: prior_dirs[name] for name in PRIORS}, backbone=None, image_size=SIZE, fusion_mode="priors_only",
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7).eval()
    plan = CropPlan.for_model(priors_only)
    assert BACKBONE_CROP_KEY not in plan.networks and plan.label_geometry["name"] == "arcface_template"
    landmarks = np.asarray(list(faces["landmarks"]), np.float64)
    labels = {}
    for feeds_pixels in (True, False):
        collator = FaceCollator(processor, "landmarks", 0, problem_type="landmarks", crop_plan=plan,
                                geometry_column="landmarks", include_pixel_values=feeds_pixels)
        view = collator.view(faces)
        labels[feeds_pixels] = collator([view[index] for index in range(len(view))])["labels"]
    torch.testing.assert_close(labels[True], labels[False])
    five = FaceGeometry.from_landmarks(landmarks * SIZE, (SIZE, SIZE), (SIZE, SIZE)).points
    arcface = crop_affines("arcface_template", landmarks=five)
    expected = (landmarks * SIZE) @ arcface[:, :, :2].transpose(0, 2, 1) + arcface[:, None, :, 2]
    np.testing.assert_allclose(labels[True].numpy(), expected / 112, atol=1e-5)
    # the ArcFace crop puts the eyes where its template does, wherever the face is in the image
    eyes = labels[True][:, [36, 45]].mean(dim=1)
    assert torch.all((eyes[:, 1] - 51.6 / 112).abs() < 0.05), eyes
    image_frame = torch.tensor(landmarks, dtype=torch.float32)
    noise = torch.randn_like(image_frame) * 0.01
    moved = landmark_labels_in_frame(image_frame + noise, landmarks, plan, (SIZE, SIZE))
    torch.testing.assert_close(normalized_mean_error(moved, labels[True], (36, 45)),
                               normalized_mean_error(image_frame + noise, image_frame, (36, 45)), rtol=1e-3, atol=1e-6)


def test_the_landmark_probe_is_fitted_in_the_frame_of_a_model_without_canonical_model(prior_dirs, monkeypatch,
                                                                                     tmp_path):
    """probe-best-prior reads pooled prior features, as a priors-only model does: its landmark targets (and the
    test labels it is scored on) are those of `CropPlan.label_frame` without a canonical model, the ArcFace crop."""
    from etfuser_hf.training.comparison import protocol
    from etfuser_hf.training.comparison.prior_features import cache_prior_features
    from etfuser_hf.training.comparison.protocol import ProtocolContext, best_prior_probe
    from etfuser_hf.training.comparison.splits import synthetic_splits
    from etfuser_hf.training.comparison.tasks import FaceTask

    dirs = {name: prior_dirs[name] for name in ("face_recognition", "age")}
    processor = ETFuserImageProcessor(size={"height": 64, "width": 64})
    splits, _ = synthetic_splits({"train": 12, "validation": 6, "test": 4}, image_size=64, seed=5)
    splits, _ = cache_prior_features(splits, dirs, processor, tmp_path / "cache", 64)
    fits = []
    real_fit = protocol.fit_probe
    monkeypatch.setattr(protocol, "fit_probe", lambda *args, **kwargs: fits.append((args, kwargs))
                        or real_fit(*args, **kwargs))
    context = ProtocolContext(splits, dirs, processor, 64, tmp_path, {}, None, {}, geometry_column="landmarks")
    task = FaceTask("landmarks", "landmarks", "landmarks", "face_landmarks")
    result = best_prior_probe(task, 0, context, splits["train"])
    args, kwargs = fits[-1]
    for labels, split in ((args[3], "train"), (kwargs["test_labels"], "test")):
        points = np.asarray(splits[split]["landmarks"], np.float64)
        expected = landmark_labels_in_frame(torch.tensor(points, dtype=torch.float32), points, CropPlan({}, None),
                                            (64, 64))
        np.testing.assert_allclose(labels, expected.numpy(), atol=1e-6)
        assert not np.allclose(labels, points, atol=0.02)
    assert np.isfinite(result.metrics["nme"])
