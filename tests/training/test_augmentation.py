"""Augmentation that every network sees (issue 34, item 1): the canonical model's pixels and each prior's crop come
from the same augmented face, online (a fresh draw per batch, the priors run on it) and through the view cache (K
fixed views rendered once, their prior features cached); a mirrored face's crops are the mirrors of its crops, its
landmarks renumbered; mixup / CutMix mix labels. Select with `-k "augment or view_cache or same_pixels"`."""

from __future__ import annotations

import argparse

import datasets
import numpy as np
import pytest
import torch

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.data.augmentation import (
    FLIP_PERMUTATIONS,
    AugmentPolicy,
    FaceAugmentation,
    augment_face,
    mix_batch,
    move_points,
)
from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.face_crops import face_crops
from etfuser_hf.data.face_geometry import face_landmarks
from etfuser_hf.data.feature_cache import PriorFeatureCache
from etfuser_hf.data.views import VIEW_COLUMN, Augmentation, EpochSampler, render_views
from etfuser_hf.models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX
from etfuser_hf.priors.crop_geometry import cut_crops
from etfuser_hf.priors.crop_plan import CropPlan
from etfuser_hf.training.comparison.augment_options import add_augmentation_arguments, parse_augmentation
from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments
from crop_fixtures import PRIORS, SIZE, faces, model, prior_dirs, processor  # noqa: F401 (fixtures)


def network_crops(model, pixel_values: torch.Tensor, prior_crops: dict) -> dict[str, torch.Tensor]:
    """Each network's crop of each face, cut from `pixel_values` (B, 3, H, W) by the batch's own affines and window
    rows (face-api's bars, fer's padding)."""
    affines = {name: value for name, value in prior_crops.items() if not name.endswith(WINDOW_SUFFIX)}
    sizes = {name: spec.image_size[0] for name, spec in model.config.priors.items()}
    sizes.update({key: model.config.backbone.image_size[0] for key in affines if key not in sizes})
    return {name: cut_crops(pixel_values, value, sizes[name], windows=prior_crops.get(name + WINDOW_SUFFIX))
            for name, value in affines.items()}


def priors_only_reader(model) -> ETFuserForImageClassification:
    """A priors-only model over `model`'s `PRIORS`: what fills the prior-feature cache."""
    return ETFuserForImageClassification.from_priors_pretrained(
        priors={name: model.etfuser.priors[name] for name in PRIORS}, backbone=None, fusion_mode="priors_only",
        image_size=SIZE, hidden_size=32, num_attention_heads=4, num_labels=2)


def assert_features_are_the_priors_on(reader, batch: dict, crops: dict) -> None:
    """Each cached prior feature of `batch` is `reader`'s prior run on its crop (`crops["prior_crops"]`) of the
    batch's own pixels."""
    with torch.inference_mode():
        recomputed = reader.etfuser.extract_prior_features(
            batch["pixel_values"], prior_crops={name: value for name, value in crops["prior_crops"].items()
                                                if name.removesuffix(WINDOW_SUFFIX) in PRIORS})
    for name in PRIORS:
        torch.testing.assert_close(batch["prior_features"][name].float(), recomputed[name].float(), atol=1e-4,
                                   rtol=1e-4)


def test_augment_flip_permutations_are_involutions_that_keep_a_symmetric_face():
    for count, permutation in FLIP_PERMUTATIONS.items():
        assert sorted(permutation) == list(range(count))
        assert [permutation[index] for index in permutation] == list(range(count))
    # a frontal synthetic face is left/right symmetric about x = 0.5: its mirror, renumbered, is itself
    points = face_landmarks("neutral", 1, np.random.default_rng(0))
    mirrored = move_points(points, FaceAugmentation(np.array([[-1.0, 0, SIZE], [0, 1, 0]]), True), (SIZE, SIZE))
    assert np.abs(mirrored - points).max() < 0.02
    # the left eye (36-41) stays on the image's left of the mirrored face
    assert mirrored[36:42, 0].mean() < mirrored[42:48, 0].mean()


def test_augment_moves_the_points_with_the_pixels():
    """A dot at each of three points, warped by a rotation and a RandomResizedCrop window: each dot's brightest pixel
    lands where the points moved to."""
    image = np.zeros((96, 96, 3), np.uint8)
    points = np.array([[0.3, 0.4], [0.7, 0.45], [0.5, 0.75]])
    for x, y in points * 96:
        image[int(y) - 1: int(y) + 2, int(x) - 1: int(x) + 2] = 255
    policy = AugmentPolicy(area=(0.7, 0.7), aspect=(1.2, 1.2), rotation=12.0)
    draw = policy.sample(np.random.default_rng(4), (96, 96))
    warped, moved = augment_face(image, {"points": points}, draw)
    for x, y in moved["points"] * 96:
        patch = warped[int(y) - 3: int(y) + 4, int(x) - 3: int(x) + 4, 0]
        row, column = np.unravel_index(np.argmax(patch), patch.shape)
        assert patch.max() > 100 and abs(row - 3) <= 1.5 and abs(column - 3) <= 1.5


def test_same_pixels_online_every_network_reads_the_augmented_face_and_a_mirror_mirrors_each_crop(
        model, faces, processor):
    """Online: the canonical model's pixels and each prior's crop come from one augmented image, placed by its moved
    landmarks; forced mirrors give exactly mirrored pixels and mirrored crops for every network."""
    plain = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model), geometry_column="landmarks")
    mirror = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model), geometry_column="landmarks",
                          augmentation=AugmentPolicy(flip=1.0), point_columns=("landmarks",))
    rows = [faces[index] for index in range(len(faces))]
    before, after = plain(rows), mirror(rows)
    torch.testing.assert_close(after["pixel_values"], before["pixel_values"].flip(-1))
    crops_before = network_crops(model, before["pixel_values"], before["prior_crops"])
    crops_after = network_crops(model, after["pixel_values"], after["prior_crops"])
    assert set(crops_after) == set(crops_before) == set(CropPlan.for_model(model).networks)
    for name in crops_before:
        # Not exact: the originals' box rules round box corners to whole pixels (face-api floors, fer truncates), and
        # dlib's chip template is not quite symmetric. Measured: 0.012-0.050 for every network; without renumbering
        # the mirrored points (FLIP_PERMUTATIONS) the dlib age chip is 0.157 off (its eyes swapped).
        difference = (crops_after[name] - crops_before[name].flip(-1)).abs().mean()
        assert difference < 0.06, (name, float(difference))
    # a random draw: the crops are still those of the batch's own pixels at its own moved landmarks
    standard = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks", augmentation=AugmentPolicy.of_level("standard"),
                            point_columns=("landmarks",))
    torch.manual_seed(1)
    batch = standard(rows)
    torch.manual_seed(1)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
    redrawn = [augment_face(np.asarray(row["image"].convert("RGB")), {"landmarks": np.asarray(row["landmarks"])},
                            AugmentPolicy.of_level("standard").sample(rng, (SIZE, SIZE))) for row in rows]
    expected_pixels = torch.from_numpy(np.stack([pixels for pixels, _ in redrawn])).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(batch["pixel_values"], expected_pixels)
    expected_crops = face_crops(np.stack([moved["landmarks"] for _, moved in redrawn]), CropPlan.for_model(model),
                                (SIZE, SIZE), pixel_values=expected_pixels)
    # the windows too (face-api's bars, fer's padding grey) are those of the augmented image
    assert set(batch["prior_crops"]) == set(expected_crops) and BACKBONE_CROP_KEY + WINDOW_SUFFIX in expected_crops
    for name, affines in expected_crops.items():
        torch.testing.assert_close(batch["prior_crops"][name], affines)


def test_same_pixels_view_cache_features_come_from_the_view_the_model_reads(model, faces, processor, tmp_path):
    """The view cache: each view row's cached prior features are the priors run on that view's pixels at its moved
    landmarks, which are the pixels the canonical model gets; view 1 is the exact mirror."""
    reader = priors_only_reader(model)
    views = render_views(faces, Augmentation("standard", "views", 3, seed=7), "image", ["landmarks"])
    assert len(views) == 3 * len(faces) and views[VIEW_COLUMN] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    original, mirrored = (np.asarray(views[index]["image"].convert("RGB")) for index in (0, 1))
    np.testing.assert_array_equal(mirrored, original[:, ::-1])
    assert not np.array_equal(np.asarray(views[2]["image"]), original)
    # rendering is seeded: the same views again
    again = render_views(faces, Augmentation("standard", "views", 3, seed=7), "image", ["landmarks"])
    np.testing.assert_array_equal(np.asarray(again[2]["image"]), np.asarray(views[2]["image"]))

    cached = PriorFeatureCache(reader, processor, tmp_path / "views", geometry_column="landmarks")(views)
    collator = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks")
    view = collator.view(cached)
    batch = collator([view[index] for index in range(len(view))])
    online = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                          geometry_column="landmarks", use_cached_features=False)
    crops = online([views[index] for index in range(len(views))])  # every network's crop of the same pixels
    torch.testing.assert_close(crops["pixel_values"], batch["pixel_values"])
    assert_features_are_the_priors_on(reader, batch, crops)


def test_augment_mixup_and_cutmix_mix_labels_as_pixels():
    pixels = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    targets = torch.eye(2)
    for policy in (AugmentPolicy(mixup_alpha=0.4), AugmentPolicy(cutmix_alpha=1.0)):
        mixed, soft = mix_batch(pixels, targets, policy, np.random.default_rng(3))
        torch.testing.assert_close(soft.sum(-1), torch.ones(2))
        # each row's share of the other image's pixels is the other class's probability
        torch.testing.assert_close(mixed[0].mean(), soft[0, 1], atol=1e-6, rtol=0)
        torch.testing.assert_close(1 - mixed[1].mean(), soft[1, 0], atol=1e-6, rtol=0)
    assert mix_batch(pixels, targets, AugmentPolicy(), np.random.default_rng(0))[1] is targets


def test_augment_online_mixup_gives_soft_targets_the_model_trains_on(model, faces, processor):
    collator = FaceCollator(processor, "expression", 7, crop_plan=CropPlan.for_model(model),
                            geometry_column="landmarks", augmentation=AugmentPolicy(mixup_alpha=0.4),
                            point_columns=("landmarks",))
    batch = collator([faces[index] for index in range(len(faces))])
    assert batch["labels"].shape == (len(faces), 7) and torch.allclose(batch["labels"].sum(-1), torch.ones(len(faces)))
    outputs = model(**batch)
    assert torch.isfinite(outputs.loss)
    landmarks = FaceCollator(processor, "landmarks", 0, problem_type="landmarks",
                             augmentation=AugmentPolicy(mixup_alpha=0.4), point_columns=("landmarks",))
    with pytest.raises(ValueError, match="a landmarks task cannot take them"):
        landmarks([faces[index] for index in range(len(faces))])


def test_epoch_sampler_draws_each_image_once_with_one_of_its_views():
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    sampler = EpochSampler(groups, seed=5)
    epochs = [list(sampler) for _ in range(20)]
    for epoch in epochs:
        assert sorted(groups[row] for row in epoch) == [0, 1, 2]
    assert len({tuple(epoch) for epoch in epochs}) > 5  # views and order change from epoch to epoch
    assert [list(EpochSampler(groups, seed=5)) for _ in range(1)] == epochs[:1]  # and are fixed by the seed
    balanced = EpochSampler([0, 1, 2, 3], seed=0, weights=[1.0, 0.0, 0.0, 1.0])
    assert {row for _ in range(10) for row in balanced} == {0, 3}
    with pytest.raises(ValueError, match="one per training image expected"):
        EpochSampler(groups, seed=0, weights=[1.0])


def test_augment_the_trainer_augments_training_batches_only(tmp_path, processor):
    train = datasets.Dataset.from_dict({"expression": [0, 1]})
    evaluation, training = (FaceCollator(processor, "expression", 2) for _ in range(2))
    trainer = ETFuserTrainer(model=torch.nn.Linear(1, 1), train_dataset=train, eval_dataset=train,
                             data_collator=evaluation, train_collator=training,
                             args=training_arguments(tmp_path, use_cpu=True))
    assert trainer.get_train_dataloader().collate_fn is training
    assert trainer.get_eval_dataloader().collate_fn is evaluation and trainer.data_collator is evaluation


def test_augment_a_users_transform_is_refused_not_dropped(processor, faces):
    collator = FaceCollator(processor, "expression", 7)
    with pytest.raises(ValueError, match="has a transform"):
        collator.view(faces.with_transform(lambda batch: batch))


def augmentation_of(*argv: str) -> Augmentation:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--resample-train", action="store_true")
    parser.add_argument("--label-fractions", nargs="*", default=[])
    parser.add_argument("--data-seed", type=int, default=1234)
    parser.add_argument("--dataset", default=None)
    add_augmentation_arguments(parser)
    return parse_augmentation(parser.parse_args(list(argv)))


@pytest.mark.parametrize(("argv", "message"), [
    (["--augment", "strong", "--augment-mode", "views"], "mixup and CutMix mix the pixels of two images"),
    (["--augment", "light", "--augment-mode", "views", "--views", "1"], "light with 1 view: one view is the image"),
    (["--augment", "light", "--views", "0"], "--views: expected at least 1"),
    (["--augment", "light", "--augment-mode", "views", "--no-cache"], "with --no-cache use --augment-mode online"),
])
def test_augment_bad_options_are_refused_by_name(argv, message):
    with pytest.raises(ValueError, match=message):
        augmentation_of(*argv)


def test_augment_views_stay_with_their_image_in_label_fractions_and_resampled_draws():
    """--label-fractions and --resample-train draw images, each with all its views (views never split from their
    image), and the same images as the split without views (label efficiency compares rows on the same images)."""
    from etfuser_hf.training.comparison.splits import draw_train, subsample_train

    plain = datasets.Dataset.from_dict({"label": list(range(10))})
    # three views per image (rendered image by image: the image, its mirror, one drawn view)
    views = datasets.Dataset.from_dict({"label": [i for i in range(10) for _ in range(3)],
                                        VIEW_COLUMN: [i for i in range(10) for _ in range(3)],
                                        "view": [v for _ in range(10) for v in range(3)]})
    half = subsample_train(views, 0.5, seed=7)
    assert len(half) == 15 and sorted(set(half[VIEW_COLUMN])) == sorted(subsample_train(plain, 0.5, seed=7)["label"])
    assert all(half[VIEW_COLUMN][3 * i:3 * i + 3] == [half[VIEW_COLUMN][3 * i]] * 3 for i in range(5))
    assert subsample_train(views, 1.0, seed=7) is views
    drawn = draw_train(views, 4, seed=3)
    assert len(drawn) == 12 and sorted(set(drawn[VIEW_COLUMN])) == sorted(draw_train(plain, 4, seed=3)["label"])
    with pytest.raises(ValueError, match="cannot draw 11 training images from a pool of 10"):
        draw_train(views, 11, seed=3)


def test_augment_options_and_mirror_of_unknown_point_counts():
    assert augmentation_of("--augment", "strong", "--augment-mode", "online").online
    assert augmentation_of("--augment", "standard", "--augment-mode", "views").renders_views
    assert augmentation_of("--augment", "standard").record()["level"] == "standard"
    # a dataset's aligned faces augment too (data/aligned_augmentation.py), in both modes
    assert augmentation_of("--augment", "light", "--augment-mode", "views", "--dataset", "path/to/RAF-DB").renders_views
    assert augmentation_of("--augment", "strong", "--augment-mode", "online", "--dataset", "path/to/RAF-DB").online
    with pytest.raises(ValueError, match="augment: expected one of"):
        AugmentPolicy.of_level("heavy")
    with pytest.raises(ValueError, match="a mirror needs a left/right permutation"):
        move_points(np.zeros((7, 2)), FaceAugmentation(np.eye(3)[:2], True), (8, 8))


def test_augment_train_help_lists_the_recipe_options():
    from etfuser_hf.training.main import build_parser

    text = build_parser().format_help()
    for option in ("--augment", "--augment-mode", "--views", "--select-on", "--recipe", "--class-weights",
                   "--label-smoothing", "--sampler", "--gradient-accumulation-steps", "--torch-compile"):
        assert option in text, option
