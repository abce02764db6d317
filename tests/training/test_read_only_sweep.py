"""`read_only_priors` chosen on validation like the fusion mode and the grid size (issue 34, item 6): `etfuser sweep
--read-only-priors off on` gives every candidate of a row with the ensemble-token stack a read-only twin, the chosen
setting travels in recipe.json to `train.py --recipe`. Select with `-k read_only`."""

from __future__ import annotations

import json

import pytest

from etfuser_hf.training.comparison.protocol import row_recipe
from etfuser_hf.training.comparison.recipe_file import read_recipe, sweep_recipe, write_recipe
from etfuser_hf.training.comparison.rows import OPTIONAL_ROWS, PROTOCOL_ROWS
from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS, resolve_tasks
from etfuser_hf.training.validation_sweep import SweepCandidate, read_only_candidates, sweep_candidates

ROWS = {row.name: row for row in PROTOCOL_ROWS}
SHRUNK = ["--num-train", "8", "--num-validation", "4", "--num-test", "4", "--image-size", "64", "--max-steps", "1",
          "--batch-size", "4", "--seeds", "1", "--workers", "1", "--priors", "expression", "face_recognition"]


def test_read_only_twins_go_to_every_row_with_the_ensemble_token_stack_and_only_there():
    task = SYNTHETIC_TASKS["expression"]
    rows = [ROWS["canonical"], ROWS["concat-mlp"], ROWS["et-fuser"], ROWS["et-fuser-spatial"],
            ROWS["et-fuser-priors-only"], OPTIONAL_ROWS["mask-isolated"], OPTIONAL_ROWS["fusion-prepend-token"]]
    base = sweep_candidates(task, rows, [1e-3, 3e-3], priors_only_learning_rates=[1e-4, 3e-4])
    base.append(SweepCandidate(ROWS["et-fuser"], 1e-3, 1.0, {"prior_feature": {"feature": "grid", "grid_size": 2},
                                                             "fusion_mode": "canonical_tokens"}, "grid 2"))
    twins = read_only_candidates(base, [False, True])
    counts = {row.name: sum(candidate.row is row for candidate in twins) for row in rows}
    assert counts == {"canonical": 2, "concat-mlp": 2, "et-fuser": 3 * 2, "et-fuser-spatial": 4,
                      "et-fuser-priors-only": 4, "mask-isolated": 2, "fusion-prepend-token": 4}
    pairs = [(original, twin) for original, twin in zip(twins, twins[1:]) if twin.settings.get("read_only_priors")]
    assert len(pairs) == 3 + 2 + 2 + 2
    for original, twin in pairs:
        assert twin.settings == {**original.settings, "read_only_priors": True} and "read_only_priors" not in \
            original.settings
        assert twin.as_row().overrides == {**original.as_row().overrides, "read_only_priors": True}
        # a twin reads the priors as its original does: et-fuser-spatial's rate candidates keep the task's grid
        assert twin.as_row().tokens == original.as_row().tokens and twin.label.endswith("read-only)")
    assert [twin.as_row().tokens for _, twin in pairs if twin.row.name == "et-fuser-spatial"] == ["spatial"] * 2
    assert len({candidate.as_row().name for candidate in twins}) == len(twins)
    # "on" alone: every stack row's candidate read-only, the others as they are
    only = read_only_candidates(base, [True])
    assert [candidate.settings.get("read_only_priors", False) for candidate in only] == [
        candidate.row.name not in ("canonical", "concat-mlp", "mask-isolated") for candidate in base]


def test_read_only_chosen_for_et_fuser_reaches_the_rows_tuned_as_it_but_not_the_mask_ablations(tmp_path):
    record = {"candidate": "et-fuser (lr 0.012, read-only)", "row": "et-fuser", "learning_rate": 1.2e-2,
              "backbone_learning_rate_scale": 1.0, "overrides": {"read_only_priors": True},
              "validation": {"mean": 0.5, "std": 0.0}}
    recipe = sweep_recipe({"expression": {"et-fuser": record}}, {"expression": "accuracy"},
                          {"expression": {"et-fuser": 2}}, "python training/sweep.py ...", [0])
    path = write_recipe(tmp_path / "recipe.json", recipe)
    (task,) = resolve_tasks(["expression"], synthetic=True, recipe=read_recipe(path))
    for name in ("et-fuser", "et-fuser-spatial", "et-fuser-pooled"):
        assert row_recipe(ROWS[name], task)["read_only_priors"] is True, name
    assert row_recipe(OPTIONAL_ROWS["mask-isolated"], task)["read_only_priors"] is False
    assert "read_only_priors" not in row_recipe(ROWS["concat-mlp"], task)
    assert "read_only_priors" not in row_recipe(ROWS["canonical"], task)


@pytest.mark.slow  # 112 s on the loaded 2-core machine (the sweep, then a run of the recipe)
def test_a_tiny_read_only_sweep_writes_both_settings_and_the_recipe_carries_the_choice(tmp_path, monkeypatch):
    from etfuser_hf.hub.cli import main
    from etfuser_hf.training.main import main as train_main

    monkeypatch.chdir(tmp_path)
    main(["sweep", "--tasks", "expression", "--rows", "et-fuser", "concat-mlp", "--read-only-priors", "off", "on",
          *SHRUNK])
    sweep = json.loads((tmp_path / "runs" / "sweep" / "sweep.json").read_text())
    recipe = json.loads((tmp_path / "runs" / "sweep" / "recipe.json").read_text())
    records = sweep["tasks"]["expression"]
    assert sweep["candidates_per_row"]["expression"] == {"et-fuser": 2, "concat-mlp": 1}
    et_fuser = [record["overrides"] for record in records if record["row"] == "et-fuser"]
    assert et_fuser == [{}, {"read_only_priors": True}]
    assert [record["settings"] for record in records] == ["", "read-only", ""]
    assert all(0.0 <= record["validation"]["mean"] <= 1.0 for record in records)
    chosen = recipe["tasks"]["expression"]["rows"]["et-fuser"]
    best = max((record for record in records if record["row"] == "et-fuser"),
               key=lambda record: record["validation"]["mean"])
    assert chosen["candidate"] == best["candidate"] and chosen["settings"] == best["overrides"]
    # the run trains what the recipe chose; made to choose read-only here, whatever the tiny sweep's scores said
    recipe["tasks"]["expression"]["rows"]["et-fuser"]["settings"] = {"read_only_priors": True}
    (tmp_path / "read_only.json").write_text(json.dumps(recipe))
    train_main(["--tasks", "expression", "--recipe", "read_only.json", "--no-baselines", "--output-dir", "runs/recipe",
                *SHRUNK])
    configs = [json.loads(path.read_text()) for path in (tmp_path / "runs" / "recipe").rglob("config.json")]
    fused = [config for config in configs if config.get("model_type") == "etfuser"]
    assert fused and all(config["read_only_priors"] is True for config in fused)
