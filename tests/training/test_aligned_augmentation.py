"""Augmentation of an aligned dataset's faces (issue 34, item 1, `--dataset`): the augmentation acts on the canonical
crop the model receives, and every network's crop is placed by the face's geometry moved with it, so the canonical
model and each prior read the same augmented face, through the view cache and online; unaugmented rows (view 0, the
validation split) are fed bit for bit as without augmentation. Select with
`-k "augment or view_cache or same_pixels or dataset or alignment"`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from layouts import write_fer2013_folders  # noqa: E402

from etfuser_hf.data.aligned_augmentation import CROP_SIZE, augment_aligned_face  # noqa: E402
from etfuser_hf.data.alignment import ALIGNMENT_COLUMN, FaceAligner, faces_of_rows, view_canonical  # noqa: E402
from etfuser_hf.data.augmentation import DLIB_5_FLIP, FLIP_PERMUTATIONS, AugmentPolicy, FaceAugmentation  # noqa: E402
from etfuser_hf.data.collators import FaceCollator  # noqa: E402
from etfuser_hf.data.face_crops import aligned_inputs  # noqa: E402
from etfuser_hf.data.face_datasets import load_face_dataset  # noqa: E402
from etfuser_hf.data.feature_cache import PriorFeatureCache  # noqa: E402
from etfuser_hf.data.pipeline import FacePipeline  # noqa: E402
from etfuser_hf.data.views import VIEW_INDEX_COLUMN, Augmentation, render_views  # noqa: E402
from etfuser_hf.models.input_checks import WINDOW_SUFFIX  # noqa: E402
from etfuser_hf.priors.crop_geometry import CANONICAL_CROP_SIZE  # noqa: E402
from etfuser_hf.priors.crop_plan import CropPlan  # noqa: E402
from crop_fixtures import model, prior_dirs, processor  # noqa: E402,F401 (fixtures)
from test_augmentation import assert_features_are_the_priors_on, network_crops, priors_only_reader  # noqa: E402

S = CANONICAL_CROP_SIZE


@pytest.fixture(scope="module")
def fer2013(tmp_path_factory):
    """FER2013's image release (48 px grey faces, the whole image is the face) read and aligned: its splits."""
    root = tmp_path_factory.mktemp("fer")
    splits = load_face_dataset(write_fer2013_folders(root))
    return FacePipeline(None, root / "cache", face_policy="whole_image", aligner=FaceAligner()).faces(splits)


def rows_of(split) -> list[dict]:
    """The split's rows, images decoded (PIL)."""
    return [split[index] for index in range(len(split))]


def test_same_pixels_aligned_view_cache_features_come_from_the_view_the_model_reads(fer2013, model, processor,
                                                                                      tmp_path):
    """The view cache of an aligned dataset: each view row's cached prior features are the priors run on that view's
    augmented canonical crop, which is what the canonical model gets; view 0 is fed exactly as without augmentation,
    view 1 is the exact mirror of its canonical crop."""
    train = fer2013["train"]
    reader = priors_only_reader(model)
    views = render_views(train, Augmentation("standard", "views", 3, seed=7), "image", [ALIGNMENT_COLUMN])
    assert len(views) == 3 * len(train) and views[VIEW_INDEX_COLUMN][:3] == [0, 1, 2]
    plan = CropPlan.for_model(model)
    collator = FaceCollator(processor, "label", 7, crop_plan=plan, geometry_column=ALIGNMENT_COLUMN)
    cached = PriorFeatureCache(reader, processor, tmp_path, geometry_column=ALIGNMENT_COLUMN)(views)
    view = collator.view(cached)
    batch = collator([view[index] for index in range(len(view))])
    assert batch["pixel_values"].shape == (len(views), 3, S, S)
    # view 0 of each image: the photo's row, fed bit for bit as the unaugmented split feeds it
    plain = collator([collator.view(train)[index] for index in range(len(train))])
    torch.testing.assert_close(batch["pixel_values"][::3], plain["pixel_values"], rtol=0, atol=0)
    assert batch["prior_crops"]  # the canonical model's crop (the priors' come from the cache)
    for name, value in batch["prior_crops"].items():
        torch.testing.assert_close(value[::3], plain["prior_crops"][name], rtol=0, atol=0)
    torch.testing.assert_close(batch["pixel_values"][1::3], plain["pixel_values"].flip(-1))
    assert not torch.equal(batch["pixel_values"][2::3], plain["pixel_values"])
    # every network's crop of the same pixels, and each cached feature is the prior's on its crop of them
    online = FaceCollator(processor, "label", 7, crop_plan=plan, geometry_column=ALIGNMENT_COLUMN,
                          use_cached_features=False)
    crops = online([view[index] for index in range(len(view))])
    torch.testing.assert_close(crops["pixel_values"], batch["pixel_values"], rtol=0, atol=0)
    assert_features_are_the_priors_on(reader, batch, crops)
    # a mirrored face's crops are, for every network, its crops mirrored: not exactly, since the rules round box
    # corners to whole photo pixels (face-api floors, fer truncates), coarse in a 48 px photo. Measured: 0.011-0.073
    # mean, against 0.08-0.17 between the mirror's crops and the unflipped ones.
    mirrored = network_crops(model, crops["pixel_values"][1::3], {k: v[1::3] for k, v in crops["prior_crops"].items()})
    original = network_crops(model, crops["pixel_values"][::3], {k: v[::3] for k, v in crops["prior_crops"].items()})
    assert set(original) == set(plan.networks)
    for name in original:
        difference = float((mirrored[name] - original[name].flip(-1)).abs().mean())
        unflipped = float((mirrored[name] - original[name]).abs().mean())
        assert difference < 0.08 and difference < 0.55 * unflipped, (name, difference, unflipped)


def test_same_pixels_aligned_online_every_network_reads_the_augmented_crop(fer2013, model, processor):
    """Online: each batch's faces are their augmented canonical crops, and every network's crop and window is placed
    by the geometry moved with them (`augment_aligned_face` on the batch's own draw); a forced mirror flips the crop."""
    plan = CropPlan.for_model(model)
    rows = rows_of(fer2013["train"])
    plain = FaceCollator(processor, "label", 7, crop_plan=plan, geometry_column=ALIGNMENT_COLUMN,
                         use_cached_features=False)(rows)
    mirror = FaceCollator(processor, "label", 7, crop_plan=plan, geometry_column=ALIGNMENT_COLUMN,
                          use_cached_features=False, augmentation=AugmentPolicy(flip=1.0),
                          point_columns=(ALIGNMENT_COLUMN,))(rows)
    torch.testing.assert_close(mirror["pixel_values"], plain["pixel_values"].flip(-1), rtol=0, atol=0)
    standard = FaceCollator(processor, "label", 7, crop_plan=plan, geometry_column=ALIGNMENT_COLUMN,
                            use_cached_features=False, augmentation=AugmentPolicy.of_level("standard"),
                            point_columns=(ALIGNMENT_COLUMN,))
    torch.manual_seed(1)
    batch = standard(rows)
    torch.manual_seed(1)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
    redrawn = [augment_aligned_face(np.asarray(row["image"].convert("RGB")), row,
                                    AugmentPolicy.of_level("standard").sample(rng, CROP_SIZE)) for row in rows]
    expected = [{**row, **columns} for row, (_, columns) in zip(rows, redrawn)]
    pixels, crops = aligned_inputs([crop for crop, _ in redrawn], expected, plan)
    torch.testing.assert_close(batch["pixel_values"], pixels, rtol=0, atol=0)
    assert set(batch["prior_crops"]) == set(crops) and any(name.endswith(WINDOW_SUFFIX) for name in crops)
    for name, value in crops.items():
        torch.testing.assert_close(batch["prior_crops"][name], value)
    with torch.no_grad():  # the priors run in the forward on those very pixels
        assert model(**{key: value for key, value in batch.items() if key != "labels"}).logits.shape == (len(rows), 7)


def test_augment_aligned_landmarks_flip_with_their_permutation_in_the_canonical_crop(fer2013):
    """The mirror of an aligned face: in its canonical crop's frame, landmark i of the view is the mirror of landmark
    FLIP_PERMUTATIONS[68][i] of the face (a left eye stays a left eye), the five points alike, and the photo's box is
    the mirror of the box."""
    row = rows_of(fer2013["train"])[0]
    _, columns = augment_aligned_face(np.asarray(row["image"].convert("RGB")), row, FaceAugmentation.mirror(S))
    faces, landmarks = faces_of_rows([row])
    view_faces, view_landmarks = faces_of_rows([{**row, **columns}])
    np.testing.assert_allclose(view_faces.canonical, faces.canonical)

    def in_crop(points: np.ndarray) -> np.ndarray:
        return points @ faces.canonical[0, :, :2].T + faces.canonical[0, :, 2]

    def mirrored(points: np.ndarray) -> np.ndarray:
        return np.stack([S - points[:, 0], points[:, 1]], axis=-1)[FLIP_PERMUTATIONS[len(points)]]

    np.testing.assert_allclose(in_crop(view_landmarks[0]), mirrored(in_crop(landmarks[0])), atol=1e-3)
    np.testing.assert_allclose(in_crop(view_faces.points[0]), mirrored(in_crop(faces.points[0])), atol=1e-3)
    # dlib's five points (its chips' placement) swap eye for eye: not MTCNN's five points' permutation
    assert faces.dlib_points is not None
    flipped = np.stack([S - in_crop(faces.dlib_points[0])[:, 0], in_crop(faces.dlib_points[0])[:, 1]], -1)
    np.testing.assert_allclose(in_crop(view_faces.dlib_points[0]), flipped[DLIB_5_FLIP], atol=1e-3)
    left, right = in_crop(view_landmarks[0])[36:42, 0].mean(), in_crop(view_landmarks[0])[42:48, 0].mean()
    assert left < right  # the left eye (36-41) stays on the crop's left
    box, view_box = faces.boxes[0], view_faces.boxes[0]
    assert np.allclose(view_box[2:] - view_box[:2], box[2:] - box[:2], atol=1e-3)


def test_augment_aligned_views_leave_validation_and_test_unchanged(fer2013):
    """Views are rendered for the training split only: the other splits are the very same rows and files."""
    pipeline = FacePipeline(None, "/nonexistent", geometry_column=ALIGNMENT_COLUMN)
    views = pipeline.views(fer2013, [Augmentation("light", "views", 2, seed=0)])
    assert len(views["train"]) == 2 * len(fer2013["train"])
    for name in fer2013:
        if name != "train":
            assert views[name] is fer2013[name] or views[name].to_dict() == fer2013[name].to_dict()
            assert views[name].column_names == fer2013[name].column_names


def test_augment_with_dataset_trains_end_to_end_on_views(tmp_path, monkeypatch):
    """`train.py --dataset <UTKFace chips> --augment light --views 2`: the training split's two views per image (the
    photo's row and its mirrored canonical crop) have their prior features cached, and the run trains on them."""
    import json

    from etfuser_hf.training.main import main
    from test_source_record import write_utkface_like

    fed = []
    collate = FaceCollator.__call__
    monkeypatch.setattr(FaceCollator, "__call__", lambda self, rows: fed.append(rows) or collate(self, rows))
    root, run = write_utkface_like(tmp_path), tmp_path / "run"
    main(["--dataset", str(root), "--tasks", "gender", "--priors", "age", "expression", "--augment", "light",
          "--augment-mode", "views", "--views", "2", "--seeds", "1", "--max-steps", "2", "--no-baselines",
          "--workers", "1", "--batch-size", "4", "--early-stopping", "0", "--precision", "fp32", "--output-dir",
          str(run)])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["protocol"]["augmentation"] == {"level": "light", "mode": "views", "views": 2, "seed": 1234}
    assert "Augmentation of the training split: **light**" in (run / "results.md").read_text()
    # the training batches drew from both views of the images: photos' rows and their augmented canonical crops
    kinds = {view_canonical(row) is not None for rows in fed for row in rows}
    assert kinds == {False, True}
