"""Augmentation chosen on validation per row (issue 34, item 5): a sweep's `--augment-candidates` give every row the
same levels and numbers of views K; the job renders every view they draw from once (the image and its mirror shared,
each level's random views its own), and each run draws from its own setting's views only. Select with
`-k augment_candidates`."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from etfuser_hf.data.augmentation import LEVELS, AugmentPolicy, augment_face
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.data.views import (VIEW_COLUMN, VIEW_INDEX_COLUMN, VIEW_LEVEL_COLUMN, Augmentation, render_views,
                                   views_for)
from etfuser_hf.training.comparison import protocol
from etfuser_hf.training.comparison.augment_options import (parse_augmentation_candidate, rendered_augmentations,
                                                            run_augmentation)
from etfuser_hf.training.comparison.protocol import ProtocolContext, train_run
from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
from etfuser_hf.training.comparison.tasks import resolve_tasks
from etfuser_hf.training.validation_sweep import augmentation_candidates, candidates_per_row

ROWS = {row.name: row for row in PROTOCOL_ROWS}
LIGHT3, STANDARD4 = Augmentation("light", "views", 3, seed=7), Augmentation("standard", "views", 4, seed=7)


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(2, 64, seed=5, mask_probability=0.0)


@pytest.fixture(scope="module")
def rendered(faces):
    return render_views(faces, [LIGHT3, STANDARD4, Augmentation()], "image", ["landmarks"])


def job_args(**options) -> argparse.Namespace:
    defaults = {"dataset": None, "no_cache": False, "resample_train": False, "label_fractions": [],
                "augmentation": Augmentation("none", "views", 4, seed=7)}
    return argparse.Namespace(**{**defaults, **options})


def test_augment_candidates_share_one_rendering_and_each_run_draws_its_own_views(faces, rendered):
    # per image: the image, its mirror, light's view 2, standard's views 2 and 3
    assert len(rendered) == 5 * len(faces)
    assert rendered[VIEW_COLUMN] == [0] * 5 + [1] * 5
    assert rendered[VIEW_INDEX_COLUMN][:5] == [0, 1, 2, 2, 3]
    assert rendered[VIEW_LEVEL_COLUMN][:5] == ["", "", "light", "standard", "standard"]
    light = views_for(rendered, LIGHT3)
    assert list(zip(light[VIEW_INDEX_COLUMN], light[VIEW_LEVEL_COLUMN])) == [(0, ""), (1, ""), (2, "light")] * 2
    assert views_for(rendered, run_augmentation(STANDARD4, {"views": 2}))[VIEW_INDEX_COLUMN] == [0, 1, 0, 1]
    plain = views_for(rendered, Augmentation())
    assert plain[VIEW_COLUMN] == [0, 1]
    for index in range(len(faces)):  # level none: the images themselves
        np.testing.assert_array_equal(np.asarray(plain[index]["image"]), np.asarray(faces[index]["image"]))
    # a drawn view is its level's own draw, seeded by (seed, image, view, level)
    image, points = np.asarray(faces[1]["image"].convert("RGB")), {"landmarks": np.asarray(faces[1]["landmarks"])}
    draw = AugmentPolicy.of_level("standard").sample(np.random.default_rng([7, 1, 3, LEVELS.index("standard")]),
                                                     image.shape[:2])
    pixels, moved = augment_face(image, points, draw)
    np.testing.assert_array_equal(np.asarray(rendered[9]["image"]), pixels)
    np.testing.assert_allclose(rendered[9]["landmarks"], moved["landmarks"])
    assert views_for(faces, STANDARD4) is faces  # no views rendered: the split itself
    with pytest.raises(ValueError, match=r"light with 4 views, but the training split holds views of"):
        views_for(rendered, Augmentation("light", "views", 4, seed=7))
    with pytest.raises(ValueError, match="no setting renders views"):
        render_views(faces, [Augmentation()], "image", ["landmarks"])


def test_augment_candidates_a_run_trains_on_its_rows_chosen_views(monkeypatch, tmp_path, rendered):
    seen = {}

    def fake_train_model(name, description, model, train, *args, **kwargs):
        seen.update(train=train, sampler=kwargs["train_sampler"])
        raise StopIteration

    monkeypatch.setattr(protocol, "train_model", fake_train_model)
    monkeypatch.setattr(protocol, "build_task_model", lambda *args, **overrides: seen.update(overrides=overrides)
                        or type("Model", (), {"config": None})())
    monkeypatch.setattr(ProtocolContext, "collator", lambda self, *args, **kwargs: None)
    (task,) = resolve_tasks(["expression"], synthetic=True)
    context = ProtocolContext({"train": rendered, "validation": None, "test": None}, {}, None, 64, tmp_path, {},
                              augmentation=Augmentation("none", "views", 4, seed=7))
    for setting, views in [({"level": "standard", "views": 4}, [0, 1, 2, 3]), ({"level": "light", "views": 3},
                                                                              [0, 1, 2]), (None, [0])]:
        with pytest.raises(StopIteration):
            train_run(ROWS["et-fuser"], task, 0, context, **({"augmentation": setting} if setting else {}))
        assert "augmentation" not in seen["overrides"]  # a data setting, never a model one
        assert sorted(set(seen["train"][VIEW_INDEX_COLUMN])) == views
        if setting:
            assert len(seen["sampler"]) == 2  # one draw per image and epoch, among its own views
        else:  # one row per image: the Trainer's own shuffling, the order it draws in a job without views
            assert seen["sampler"] is None
    monkeypatch.setattr(protocol, "best_prior_probe", lambda task, seed, context, train, evaluate_test: seen.update(
        probe_train=train))
    train_run(ROWS["probe-best-prior"], task, 0, context)
    assert list(seen["probe_train"][VIEW_INDEX_COLUMN]) == [0, 0]  # not the views other rows chose


def test_augment_candidates_are_parsed_checked_and_the_same_for_every_row():
    args = job_args()
    assert parse_augmentation_candidate("none", args.augmentation, args) == {"level": "none"}
    assert parse_augmentation_candidate("light", args.augmentation, args) == {"level": "light", "views": 4}
    assert parse_augmentation_candidate("standard:2", args.augmentation, args) == {"level": "standard", "views": 2}
    for value, message in [("heavy", "expected none, LEVEL or LEVEL:K"), ("light:x", "expected none, LEVEL or"),
                           ("light:1", "--augment-candidates light with 1 view"),
                           ("strong:4", "--augment-candidates strong: mixup and CutMix")]:
        with pytest.raises(ValueError, match=message):
            parse_augmentation_candidate(value, args.augmentation, args)
    # a dataset's aligned faces are augmented too (data/aligned_augmentation.py)
    assert parse_augmentation_candidate("light:2", args.augmentation, job_args(dataset="path/to/RAF-DB")) == {
        "level": "light", "views": 2}
    (task,) = resolve_tasks(["expression"], synthetic=True)
    settings = [{"level": "none"}, {"level": "light", "views": 2}, {"level": "standard", "views": 4}]
    candidates = augmentation_candidates(task, [ROWS["canonical"], ROWS["et-fuser"], ROWS["concat-mlp"]], settings)
    records = [{"row": candidate.row.name} for candidate in candidates]
    assert candidates_per_row(records) == {"canonical": 3, "et-fuser": 3, "concat-mlp": 3}
    assert [candidate.tag for candidate in candidates[:3]] == ["augment none", "augment light K=2",
                                                               "augment standard K=4"]
    assert candidates[4].settings == {"augmentation": {"level": "light", "views": 2}}
    assert candidates[4].learning_rate == task.row_learning_rate("et-fuser")


def test_augment_candidates_the_job_renders_what_its_rows_and_candidates_draw_from():
    args = job_args()
    rendered = rendered_augmentations(args, [{"augmentation": {"level": "light", "views": 2}}, {}],
                                      [{"level": "none"}, {"level": "standard", "views": 3},
                                       {"level": "light", "views": 2}])
    assert rendered == [Augmentation("light", "views", 2, 7), Augmentation("standard", "views", 3, 7)]
    assert rendered_augmentations(args, [{}], [{"level": "none"}]) == []
    # a dataset's aligned faces render views too (data/aligned_augmentation.py); what views cannot hold is refused
    assert rendered_augmentations(job_args(dataset="faces.csv"), [{"augmentation": {"level": "light", "views": 2}}]
                                  ) == [Augmentation("light", "views", 2, 7)]
    with pytest.raises(ValueError, match="--recipe strong: mixup and CutMix"):
        rendered_augmentations(job_args(dataset="faces.csv"), [{"augmentation": {"level": "strong", "views": 2}}])
    with pytest.raises(ValueError, match="augmentation: expected"):
        run_augmentation(args.augmentation, {"level": "light", "K": 2})


@pytest.mark.slow
def test_augment_candidates_sweep_chooses_per_row_and_the_recipe_trains_with_it(tmp_path, monkeypatch):
    import json

    from etfuser_hf.hub.cli import main
    from etfuser_hf.training.main import main as train_main

    shrunk = ["--num-train", "8", "--num-validation", "4", "--num-test", "4", "--image-size", "64", "--max-steps",
              "1", "--batch-size", "4", "--seeds", "1", "--workers", "1", "--priors", "expression", "face_recognition"]
    monkeypatch.chdir(tmp_path)
    main(["sweep", "--tasks", "expression", "--rows", "canonical", "et-fuser", "--augment-candidates", "none",
          "light:2", "standard:3", *shrunk])
    sweep = json.loads((tmp_path / "runs" / "sweep" / "sweep.json").read_text())
    assert sweep["candidates_per_row"]["expression"] == {"canonical": 3, "et-fuser": 3}
    recipe = json.loads((tmp_path / "runs" / "sweep" / "recipe.json").read_text())
    chosen = {row: setting["settings"]["augmentation"] for row, setting in recipe["tasks"]["expression"]["rows"].items()}
    assert set(chosen) == {"canonical", "et-fuser"}
    summary = train_main(["--tasks", "expression", "--recipe", "runs/sweep/recipe.json", "--no-baselines",
                          "--output-dir", "runs/recipe", *shrunk])
    chosen_tags = summary["protocol"]["recipe_file"]["tasks"]["expression"]
    assert chosen_tags == {row: setting["candidate"] for row, setting in recipe["tasks"]["expression"]["rows"].items()}
    assert all("augment " in tag for tag in chosen_tags.values())


def test_augment_candidates_of_a_spatial_row_read_its_grid_and_a_pooled_spatial_candidate_does_not():
    from etfuser_hf.training.comparison.protocol import row_recipe
    from etfuser_hf.training.validation_sweep import spatial_candidates

    (task,) = resolve_tasks(["expression"], synthetic=True)
    spatial_row = ROWS["et-fuser-spatial"]
    grid = row_recipe(spatial_row, task)["prior_feature"]
    (augmented,) = augmentation_candidates(task, [spatial_row], [{"level": "light", "views": 2}])
    assert row_recipe(augmented.as_row(), task)["prior_feature"] == grid  # the row's own grid, not pooled priors
    pooled, *_ = spatial_candidates(task, [spatial_row], ["pooled"], [False], {})
    assert "prior_feature" not in row_recipe(pooled.as_row(), task)


def test_augment_candidates_of_et_fuser_read_the_tokens_its_task_chose_and_its_rate_grid_the_pooled_priors():
    from etfuser_hf.training.comparison.protocol import row_recipe
    from etfuser_hf.training.validation_sweep import sweep_candidates

    (task,) = resolve_tasks(["age_group"], synthetic=True)  # et-fuser reads the grid there (main_tokens "spatial")
    main_row = ROWS["et-fuser"]
    assert task.main_tokens == "spatial"
    (augmented,) = augmentation_candidates(task, [main_row], [{"level": "light", "views": 2}])
    assert row_recipe(augmented.as_row(), task)["prior_feature"] == row_recipe(main_row, task)["prior_feature"]
    (rate,) = sweep_candidates(task, [main_row])  # the sweep chooses et-fuser's tokens: its rates read pooled priors
    assert "prior_feature" not in row_recipe(rate.as_row(), task)
