"""Spatial tokens in the training protocol: the feature cache stores grid views beside the recipe's, the spatial rows
and their fair baselines, and the sweep's spatial candidates. Select with `-k "grid or spatial"`."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from etfuser_hf import ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator
from etfuser_hf.data.feature_cache import feature_column, feature_view
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.training.comparison.prior_features import cache_prior_features
from etfuser_hf.training.comparison.protocol import distinct_rows, row_recipe
from etfuser_hf.training.comparison.recipe import build_task_model
from etfuser_hf.training.comparison.rows import OPTIONAL_ROWS, PROTOCOL_ROWS
from etfuser_hf.training.comparison.splits import synthetic_splits
from etfuser_hf.training.comparison.tasks import NATIVE_GRIDS, SYNTHETIC_TASKS, augmented
from etfuser_hf.training.main import parse_args, protocol_rows
from etfuser_hf.training.validation_sweep import spatial_candidates, sweep_candidates

GRID = {"feature": "grid", "grid_size": 2}
ROWS = {row.name: row for row in PROTOCOL_ROWS}


def test_cached_grid_features_give_the_same_logits_as_live_ones(tmp_path):
    prior_dirs = ensure_face_priors(names=("expression", "face_recognition", "age"))
    splits, _ = synthetic_splits({"train": 6, "validation": 2, "test": 2}, image_size=64, seed=5)
    processor = ETFuserImageProcessor(size={"height": 64, "width": 64})
    cached = cache_prior_features(splits, prior_dirs, processor, tmp_path, 64, [GRID])[0]["train"]
    view = feature_view(GRID)
    assert np.asarray(cached[feature_column("age", view)][0]).shape == (4, 256)  # the dlib net's 3 x 3 map, 2 x 2 cells
    assert np.asarray(cached[feature_column("age")][0]).shape == (1, 256)  # the recipe's pooled view stays
    task = SYNTHETIC_TASKS["expression"]
    model = build_task_model(task, prior_dirs, list(range(7)), 64, prior_feature=GRID).eval()
    assert model.config.priors["age"].num_output_tokens == 4
    with torch.no_grad():
        model.base_model.fusion_gate.fill_(1.0)  # the priors' tokens count in the logits
    rows = [cached[i] for i in range(4)]
    from_cache = FaceCollator(processor, task.column, 7, feature_view=view)(rows)
    live = FaceCollator(processor, task.column, 7, use_cached_features=False)(rows)
    assert set(from_cache["prior_features"]) == {"age", "expression", "face_recognition"}  # all tasks share the cache
    with torch.no_grad():
        torch.testing.assert_close(model(**from_cache).logits, model(**live).logits, rtol=1e-4, atol=1e-5)


def test_spatial_rows_read_the_tasks_spatial_setting_beside_the_pooled_rows_they_are_compared_to():
    grid4 = {"feature": "grid", "grid_size": 4}
    expression = SYNTHETIC_TASKS["expression"]
    # every row without augmentation here, so that which rows train alike turns on their tokens (own_augmentation below)
    task = dataclasses.replace(expression, spatial={"prior_feature": grid4, "fusion_mode": "canonical_tokens"},
                               row_tokens={"concat-mlp": {"prior_feature": NATIVE_GRIDS}},
                               row_overrides={name: {key: value for key, value in overrides.items()
                                                     if key != "augmentation"}
                                              for name, overrides in expression.row_overrides.items()})
    recipes = {name: row_recipe(row, task) for name, row in ROWS.items()}
    assert recipes["et-fuser-spatial"]["prior_feature"] == grid4
    assert recipes["et-fuser-spatial"]["fusion_mode"] == "canonical_tokens"
    # concatenation over the very tokens the spatial row reads (its own fusion mode kept)
    assert recipes["concat-mlp-grid"]["prior_feature"] == grid4
    assert recipes["concat-mlp-grid"]["fusion_mode"] == "concat_priors"
    for pooled in ("et-fuser", "et-fuser-pooled"):  # validation chose pooled tokens for et-fuser here
        assert "prior_feature" not in recipes[pooled] and "fusion_mode" not in recipes[pooled]
    assert ROWS["concat-mlp-grid"].tuning == "concat-mlp" and ROWS["et-fuser-spatial"].tuning == "et-fuser"
    assert task.row_learning_rate(ROWS["et-fuser-pooled"].tuning) == task.row_learning_rate("et-fuser")
    # concat-mlp reads the tokens validation chose for it (FaceTask.row_tokens), concat-mlp-pooled pooled ones
    assert recipes["concat-mlp"]["prior_feature"] == task.row_tokens["concat-mlp"]["prior_feature"] == NATIVE_GRIDS
    assert "prior_feature" not in recipes["concat-mlp-pooled"]
    assert ROWS["concat-mlp-pooled"].tuning == "concat-mlp"
    # a row that would train exactly as an earlier one is trained once
    assert [row.name for row in distinct_rows(list(PROTOCOL_ROWS), task)] == [
        "et-fuser", "canonical", "concat-mlp", "concat-mlp-pooled", "concat-mlp-grid", "et-fuser-spatial",
        "et-fuser-priors-only", "probe-best-prior"]
    # where concat-mlp chose the grid et-fuser-spatial reads (and the same augmentation), concat-mlp-grid would train
    # as it: trained once; with an augmentation of its own it is trained on its own
    same_grid = dataclasses.replace(task, row_tokens={"concat-mlp": {"prior_feature": grid4}})
    assert "concat-mlp-grid" not in [row.name for row in distinct_rows(list(PROTOCOL_ROWS), same_grid)]
    own_augmentation = dataclasses.replace(same_grid, row_overrides={**task.row_overrides,
                                                                     "concat-mlp-grid": augmented("light", 2)})
    assert "concat-mlp-grid" in [row.name for row in distinct_rows(list(PROTOCOL_ROWS), own_augmentation)]
    spatial_main = dataclasses.replace(task, main_tokens="spatial")
    assert row_recipe(ROWS["et-fuser"], spatial_main)["prior_feature"] == grid4
    assert "et-fuser-spatial" not in [row.name for row in distinct_rows(list(PROTOCOL_ROWS), spatial_main)]
    assert "et-fuser-pooled" in [row.name for row in distinct_rows(list(PROTOCOL_ROWS), spatial_main)]
    no_spatial = dataclasses.replace(task, spatial={})
    assert [row.name for row in distinct_rows(list(PROTOCOL_ROWS), dataclasses.replace(no_spatial, row_tokens={}))] == [
        "et-fuser", "canonical", "concat-mlp", "et-fuser-priors-only", "probe-best-prior"]
    with pytest.raises(ValueError, match="main_tokens='spatial' needs a spatial setting"):
        dataclasses.replace(no_spatial, main_tokens="spatial")
    with pytest.raises(ValueError, match="main_tokens: expected 'pooled' or 'spatial'"):
        dataclasses.replace(task, main_tokens="grid")
    # a spatial sweep candidate reads the priors as its own settings say, never as the task chose
    candidate = spatial_candidates(spatial_main, [ROWS["et-fuser"]], ["pooled"], [False], {})[0]
    assert "prior_feature" not in row_recipe(candidate.as_row(), spatial_main)
    # a rate candidate of et-fuser reads pooled priors (the sweep chooses its tokens), of et-fuser-spatial its grid
    rate_candidates = sweep_candidates(spatial_main, [ROWS["et-fuser"], ROWS["et-fuser-spatial"]])
    assert "prior_feature" not in row_recipe(rate_candidates[0].as_row(), spatial_main)
    assert row_recipe(rate_candidates[1].as_row(), spatial_main)["prior_feature"] == grid4
    exploratory = {name: row for name, row in OPTIONAL_ROWS.items() if row.group == "spatial"}
    assert set(exploratory) == {"et-fuser-grid2", "et-fuser-grid2-canonical", "concat-mlp-grid2"}
    assert exploratory["concat-mlp-grid2"].overrides["prior_feature"] == exploratory["et-fuser-grid2"].overrides[
        "prior_feature"]
    args = parse_args(["--spatial", "--output-dir", "/nonexistent/spatial-rows"])
    names = [row.name for row in protocol_rows(args, task, first=True)]
    assert set(exploratory) <= set(names) and names[0] == "et-fuser"
    default = parse_args(["--output-dir", "/nonexistent/spatial-rows"])
    assert not {row.name for row in protocol_rows(default, task, True)} & set(exploratory)


def test_spatial_sweep_candidates_cover_grid_sizes_and_canonical_tokens():
    task = SYNTHETIC_TASKS["landmarks"]
    prior_dirs = ensure_face_priors(names=("expression", "face_recognition", "age"))
    candidates = spatial_candidates(task, [ROWS["et-fuser"], ROWS["concat-mlp"]], [1, 4, "native", "pooled"],
                                    [False, True], prior_dirs)
    tags = [(candidate.row.name, candidate.tag) for candidate in candidates]
    assert tags == [("et-fuser", "grid 1"), ("et-fuser", "grid 1 + canonical tokens"), ("et-fuser", "grid 4"),
                    ("et-fuser", "grid 4 + canonical tokens"), ("et-fuser", "grid native"),
                    ("et-fuser", "grid native + canonical tokens"), ("et-fuser", "pooled"),
                    ("et-fuser", "pooled + canonical tokens"),
                    ("concat-mlp", "grid 1"), ("concat-mlp", "grid 4"), ("concat-mlp", "grid native"),
                    ("concat-mlp", "pooled")]
    assert candidates[6].settings == {} and candidates[-1].as_row().overrides == {
        "fusion_mode": "concat_priors", "backbone_learning_rate_scale": task.row_overrides["concat-mlp"][
            "backbone_learning_rate_scale"]}  # the pooled reference is the row as tuned
    native = candidates[4].settings["prior_feature"]
    assert {name: spec["grid_size"] for name, spec in native.items()} == {"expression": 4, "face_recognition": 2,
                                                                          "age": 3}
    assert candidates[1].as_row().overrides["fusion_mode"] == "canonical_tokens"
    # each at the row's tuned rate on the task (landmarks: et-fuser at 9e-3 with the canonical model at a third)
    assert candidates[0].learning_rate == task.row_learning_rate("et-fuser")
    assert candidates[0].as_row().overrides["backbone_learning_rate_scale"] == task.row_overrides["et-fuser"][
        "backbone_learning_rate_scale"]
    assert len({candidate.as_row().name for candidate in candidates}) == len(candidates)


def test_grid_attention_maps_are_drawn_for_spatial_models_only(tmp_path):
    import datasets
    import PIL.Image
    from conftest import tiny_etfuser_config, tiny_spatial_config

    from etfuser_hf import ETFuserForImageClassification
    from etfuser_hf.analysis.attention_maps import CANONICAL, attention_overlay, grid_attention
    from etfuser_hf.training.report.plots import save_attention_maps

    torch.manual_seed(0)
    spatial = ETFuserForImageClassification(tiny_spatial_config("canonical_tokens", grid_size=3)).eval()
    pooled = ETFuserForImageClassification(tiny_etfuser_config()).eval()
    rng = np.random.default_rng(0)
    faces = [PIL.Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    maps = grid_attention(spatial, torch.rand(2, 3, 32, 32))
    assert {name: grid.shape for name, grid in maps.items()} == {"fer": (2, 3, 3), "vit": (2, 3, 3),
                                                                 CANONICAL: (2, 2, 2)}
    assert all(np.allclose(grid.sum(axis=(1, 2)), 1.0, atol=1e-5) for grid in maps.values())
    assert grid_attention(pooled, torch.rand(2, 3, 32, 32)) == {}
    assert attention_overlay(faces[0], maps["fer"][0]).size == faces[0].size
    test = datasets.Dataset.from_dict({"image": faces}, features=datasets.Features({"image": datasets.Image()}))
    processor = ETFuserImageProcessor(size={"height": 32, "width": 32})
    assert save_attention_maps(tmp_path, {"expression": spatial, "pooled": pooled}, test, processor) == [
        "attention_maps.png"]
    assert PIL.Image.open(tmp_path / "attention_maps.png").size[0] > 300
    assert save_attention_maps(tmp_path / "none", {"pooled": pooled}, test, processor) == []


def test_run_folder_attention_maps_draw_each_grid_over_the_crop_training_fed_its_network(tmp_path, monkeypatch):
    from conftest import tiny_spatial_config

    from etfuser_hf import ETFuserForImageClassification
    from etfuser_hf.analysis.attention_maps import CANONICAL, grid_attention
    from etfuser_hf.data.collators import pixel_values
    from etfuser_hf.data.face_crops import face_crops
    from etfuser_hf.data.synthetic_faces import make_synthetic_faces
    from etfuser_hf.priors.crop_geometry import cut_crops
    from etfuser_hf.priors.crop_plan import CropPlan
    from etfuser_hf.training.report import plots

    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_spatial_config("canonical_tokens", grid_size=2, image_size=64)).eval()
    test = make_synthetic_faces(2, image_size=64, seed=3, mask_probability=0.0)
    processor = ETFuserImageProcessor(size={"height": 64, "width": 64})
    drawn = []
    monkeypatch.setattr(plots, "save_attention_figure", lambda path, rows, title: drawn.extend(rows))
    assert plots.save_attention_maps(tmp_path, {"expression": model}, test, processor, num_faces=2,
                                     geometry_column="landmarks") == ["attention_maps.png"]
    # what training feeds: each network's crop placed by the faces' landmarks (the FER net's fer_box, the ViT prior
    # and the canonical model the ArcFace template)
    inputs = pixel_values(list(test["image"]), processor)
    crops = face_crops(np.asarray(test["landmarks"], np.float64), CropPlan.for_model(model), (64, 64),
                       pixel_values=inputs)
    maps = grid_attention(model, inputs, prior_crops=crops)
    assert [row.title for row in drawn] == ["expression #0", "expression #1"]
    assert list(maps) == ["fer", "vit", CANONICAL]
    whole = grid_attention(model, inputs)
    for index, row in enumerate(drawn):
        np.testing.assert_array_equal(np.asarray(row.face), (inputs[index].permute(1, 2, 0) * 255).round().byte())
        for name in maps:
            np.testing.assert_allclose(row.grids[name], maps[name][index], rtol=1e-5, atol=1e-7)
            spec = model.config.backbone if name == CANONICAL else model.config.priors[name]
            key = "backbone" if name == CANONICAL else name
            affine = crops[key][index:index + 1].double()
            affine = affine * torch.tensor([[64 / spec.image_size[1]], [64 / spec.image_size[0]]]).double()
            windows = crops.get(f"{key}.window")  # fer's padding grey around the FER net's crop
            windows = None if windows is None else windows[index:index + 1]
            expected = cut_crops(inputs[index:index + 1], affine, 64, antialias=True, windows=windows)[0] * 255
            expected = expected.permute(1, 2, 0)
            assert row.crops[name].size == (64, 64) and row.crops[name].mode == "RGB"
            assert np.abs(np.asarray(row.crops[name], np.float64) - expected.numpy()).max() <= 0.5 + 1e-3
        # the maps of the crops differ from those of every network reading the whole face (random fusion weights
        # keep every map near uniform, yet the difference is far above the tolerance of the equality above)
        assert max(np.abs(whole[name][index] - maps[name][index]).max() for name in maps) > 2e-4


def test_spatial_task_tables_name_the_tokens_and_say_whether_the_token_beats_concatenation_over_them():
    from etfuser_hf.training.report.task_tables import describe_tokens, reading, render_task_table, task_table
    from etfuser_hf.training.run.trainer import RunResult

    assert describe_tokens(None) == "pooled" and describe_tokens(GRID) == "grid 2"
    assert describe_tokens({"age": {"feature": "grid", "grid_size": 3},
                            "expression": {"feature": "grid", "grid_size": 4}}) == "grid age 3, expression 4"

    def runs(name: str, accuracies: list[float]) -> list[RunResult]:
        return [RunResult(name, name, np.zeros(20, int), np.zeros((20, 7)), {"accuracy": value, "macro_f1": 0.1},
                          validation_metrics={"accuracy": value}, scores=np.ones(20) * (value > 0.5), split="test")
                for value in accuracies]

    task = dataclasses.replace(SYNTHETIC_TASKS["expression"], spatial={"prior_feature": GRID}, main_tokens="pooled",
                               row_tokens={})  # concat-mlp chose pooled priors here
    clear = {"et-fuser": runs("et-fuser", [0.60, 0.61, 0.62]), "canonical": runs("canonical", [0.52, 0.53, 0.55]),
             "concat-mlp": runs("concat-mlp", [0.60, 0.62, 0.61]),
             "concat-mlp-grid": runs("concat-mlp-grid", [0.50, 0.51, 0.515]),
             "et-fuser-spatial": runs("et-fuser-spatial", [0.70, 0.72, 0.71])}
    table = task_table(task, clear, [0, 1, 2], "et-fuser")
    assert table["tokens"] == "pooled" and table["spatial_tokens"] == "grid 2"
    pairs = {(pair["token_row"], pair["concatenation_row"]): pair for pair in table["same_tokens"]}
    assert set(pairs) == {("et-fuser", "concat-mlp"), ("et-fuser-spatial", "concat-mlp-grid")}
    assert pairs[("et-fuser-spatial", "concat-mlp-grid")]["gain"] == 0.2017
    assert pairs[("et-fuser-spatial", "concat-mlp-grid")]["p_seeds_ttest"] < 0.05
    markdown = render_task_table(table)
    assert "et-fuser prior tokens `pooled`" in markdown and "spatial rows' tokens `grid 2`" in markdown
    assert "ensemble token against concatenation: et-fuser-spatial - concat-mlp-grid = +0.2017" in markdown
    text = reading(table)
    assert "et-fuser-spatial vs concat-mlp-grid: +0.2017" in text and text.count("does not beat") == 1
    assert "et-fuser vs concat-mlp: +0.0000" in text
    spatial_main = dataclasses.replace(task, main_tokens="spatial")  # et-fuser itself on the grid: one pair
    level = {"et-fuser": clear["et-fuser-spatial"], "canonical": clear["canonical"],
             "concat-mlp-grid": runs("concat-mlp-grid", [0.71, 0.70, 0.72])}
    table = task_table(spatial_main, level, [0, 1, 2], "et-fuser")
    assert table["tokens"] == "grid 2" and [pair["concatenation_row"] for pair in table["same_tokens"]] == [
        "concat-mlp-grid"]
    assert "the ensemble token does not beat concatenation here" in reading(table)
    # concat-mlp at its own best, the grid: et-fuser's pooled tokens are read by concat-mlp-pooled, the grid by it
    own_grid = dataclasses.replace(task, row_tokens={"concat-mlp": {"prior_feature": GRID}})
    chosen = {**clear, "concat-mlp-pooled": runs("concat-mlp-pooled", [0.58, 0.59, 0.60])}
    pairs = [(pair["token_row"], pair["concatenation_row"]) for pair in task_table(own_grid, chosen, [0, 1, 2],
                                                                                   "et-fuser")["same_tokens"]]
    assert pairs == [("et-fuser", "concat-mlp-pooled"), ("et-fuser-spatial", "concat-mlp")]


def test_label_efficiency_sets_the_spatial_token_against_concatenation_over_the_same_tokens_at_every_fraction():
    from etfuser_hf.training.report.curves import row_comparisons
    from etfuser_hf.training.report.label_efficiency_curves import render_label_efficiency_markdown

    task = dataclasses.replace(SYNTHETIC_TASKS["landmarks"], spatial={"prior_feature": GRID}, main_tokens="pooled")  # NME

    def points(values_by_fraction: dict[str, list[float]]) -> dict[str, dict]:
        return {fraction: {"mean": float(np.mean(values)), "std": 0.0, "per_seed": values}
                for fraction, values in values_by_fraction.items()}

    per_row = {"canonical": points({"0.05": [0.20, 0.21, 0.22], "1.0": [0.08, 0.081, 0.082]}),
               "concat-mlp": points({"0.05": [0.15, 0.16, 0.15], "1.0": [0.05, 0.051, 0.05]}),
               "concat-mlp-grid": points({"0.05": [0.16, 0.17, 0.18], "1.0": [0.05, 0.05, 0.051]}),
               "et-fuser": points({"0.05": [0.15, 0.16, 0.15], "1.0": [0.05, 0.051, 0.05]}),
               "et-fuser-spatial": points({"0.05": [0.12, 0.125, 0.13], "1.0": [0.05, 0.0505, 0.0505]})}
    comparisons = {(entry["row"], entry["against"]): entry["points"]
                   for entry in row_comparisons(task, per_row, task.greater_is_better)}
    assert set(comparisons) == {("et-fuser", "concat-mlp"), ("et-fuser-spatial", "concat-mlp-grid"),
                                ("et-fuser", "canonical"), ("et-fuser-spatial", "canonical")}
    few = comparisons[("et-fuser-spatial", "concat-mlp-grid")]["0.05"]
    assert few["gain"] == 0.045 and few["p_seeds_ttest"] < 0.05  # positive: the token row's NME is lower
    assert comparisons[("et-fuser", "concat-mlp")]["0.05"]["p_seeds_ttest"] == 1.0
    markdown = render_label_efficiency_markdown({"landmarks": {"metric": "nme", "split": "test", "rows": per_row,
                                                               "comparisons": [
        {"row": "et-fuser-spatial", "against": "concat-mlp-grid",
         "points": comparisons[("et-fuser-spatial", "concat-mlp-grid")]}]}})
    assert "| et-fuser-spatial - concat-mlp-grid: gain, p (t-test over seeds, test split) | +0.0450, p = " in markdown
