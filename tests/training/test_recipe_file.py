"""The recipe file from sweep to run (issue 34, item 3): `etfuser sweep` writes each row's best setting on validation to
recipe.json, `train.py --recipe` trains each row with exactly that (the same rate and overrides reach the model and
the Trainer as the sweep's candidate had), and the run records where its settings were chosen. Select with
`-k recipe_file`."""

from __future__ import annotations

import json

import datasets
import pytest

from etfuser_hf.training.comparison.augment_options import run_augmentation
from etfuser_hf.training.comparison import protocol
from etfuser_hf.training.comparison.protocol import ProtocolContext, train_run
from etfuser_hf.training.comparison.recipe_file import read_recipe, sweep_recipe, task_fields, write_recipe
from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
from etfuser_hf.training.comparison.tasks import resolve_tasks
from etfuser_hf.training.validation_sweep import SweepCandidate

ROWS = {row.name: row for row in PROTOCOL_ROWS}
SHRUNK = ["--num-train", "8", "--num-validation", "4", "--num-test", "4", "--image-size", "64", "--max-steps", "1",
          "--batch-size", "4", "--seeds", "1", "--workers", "1", "--priors", "expression", "face_recognition"]


def what_the_trainer_gets(monkeypatch, tmp_path, row, task, **run_options) -> tuple[float, dict]:
    """(learning rate, model overrides) that `train_run` hands the Trainer and `build_task_model` for `row`, with the
    row's augmentation setting (which the run's views come from) among the overrides where it has one."""
    seen = {}
    chosen_augmentation = {}

    def recording_run_augmentation(job, setting):
        if setting:
            chosen_augmentation["augmentation"] = dict(setting)
        return run_augmentation(job, setting)

    def fake_train_model(name, *args, **kwargs):
        seen["learning_rate"] = kwargs["learning_rate"]
        raise StopIteration

    def fake_build_task_model(task, *args, **overrides):
        seen["overrides"] = overrides
        return type("Model", (), {"config": None})()

    monkeypatch.setattr(protocol, "run_augmentation", recording_run_augmentation)
    monkeypatch.setattr(protocol, "train_model", fake_train_model)
    monkeypatch.setattr(protocol, "build_task_model", fake_build_task_model)
    monkeypatch.setattr(ProtocolContext, "collator", lambda self, task, model, prior_feature=None: None)
    context = ProtocolContext({"train": datasets.Dataset.from_dict({}), "validation": None, "test": None}, {}, None, 64,
                              tmp_path, {})
    with pytest.raises(StopIteration):
        train_run(row, task, 0, context, **run_options)
    return seen["learning_rate"], {**seen["overrides"], **chosen_augmentation}


@pytest.mark.parametrize("settings", [{}, {"prior_feature": {"feature": "grid", "grid_size": 2}},
                                      {"distillation": {"weight": 1.0, "temperature": 2.0}},
                                      {"augmentation": {"level": "light", "views": 2}}])
def test_recipe_file_row_trains_as_its_sweep_candidate_did(monkeypatch, tmp_path, settings):
    (base,) = resolve_tasks(["expression"], synthetic=True)
    candidate = SweepCandidate(ROWS["et-fuser"], 4.5e-3, 1 / 3, settings, "tag" if settings else "")
    record = {"candidate": candidate.label, "row": "et-fuser", "learning_rate": candidate.learning_rate,
              "backbone_learning_rate_scale": candidate.backbone_learning_rate_scale, "overrides": settings,
              "validation": {"mean": 0.5, "std": 0.0}}
    path = write_recipe(tmp_path / "recipe.json", sweep_recipe({"expression": {"et-fuser": record}},
                                                               {"expression": "accuracy"}, {"expression": {"et-fuser": 3}},
                                                               "python training/sweep.py ...", [0, 1]))
    (task,) = resolve_tasks(["expression"], synthetic=True, recipe=read_recipe(path))
    assert task.candidates_per_row == {**base.candidates_per_row, "et-fuser": 3} and task.main_tokens == "pooled"
    from_recipe = what_the_trainer_gets(monkeypatch, tmp_path, ROWS["et-fuser"], task)
    # the sweep's own run of that candidate: its row under its own name, at its rate, on the task as the sweep saw it
    swept = what_the_trainer_gets(monkeypatch, tmp_path, candidate.as_row(), base,
                                  learning_rate=candidate.learning_rate)
    assert from_recipe[0] == swept[0] == 4.5e-3
    assert from_recipe[1] == swept[1]
    # a row the sweep did not try keeps the task's own rate
    assert task.row_learning_rate("canonical") == base.row_learning_rate("canonical")


def test_recipe_file_sweep_writes_it_and_train_records_where_settings_were_chosen(tmp_path, monkeypatch):
    from etfuser_hf.hub.cli import main
    from etfuser_hf.training.main import main as train_main

    monkeypatch.chdir(tmp_path)
    main(["sweep", "--tasks", "expression", "--rows", "canonical", "--learning-rates", "1e-3", "3e-3", *SHRUNK])
    sweep = json.loads((tmp_path / "runs" / "sweep" / "sweep.json").read_text())
    recipe = json.loads((tmp_path / "runs" / "sweep" / "recipe.json").read_text())
    best = max(sweep["tasks"]["expression"], key=lambda record: record["validation"]["mean"])
    assert recipe["chosen_on"] == "validation" and recipe["command"] == sweep["command"]
    chosen = recipe["tasks"]["expression"]["rows"]["canonical"]
    assert chosen["learning_rate"] == best["learning_rate"] and chosen["candidate"] == best["candidate"]
    assert recipe["tasks"]["expression"]["candidates_per_row"] == {"canonical": 2}
    summary = train_main(["--tasks", "expression", "--recipe", "runs/sweep/recipe.json", "--no-baselines",
                          "--output-dir", "runs/recipe", *SHRUNK])
    record = summary["protocol"]["recipe_file"]
    assert record["path"] == "runs/sweep/recipe.json" and record["command"] == sweep["command"]
    assert record["tasks"] == {"expression": {"canonical": best["candidate"]}}
    assert summary["protocol"]["budget"]["row_learning_rates"]["expression"]["canonical"] == best["learning_rate"]
    results = (tmp_path / "runs" / "recipe" / "results.md").read_text()
    assert f"Row settings from `runs/sweep/recipe.json`, chosen on the validation split by `{sweep['command']}`" in results
    assert f"canonical {best['candidate']}" in results


def test_recipe_file_and_learning_rate_flag_are_refused_together(tmp_path, capsys):
    from etfuser_hf.training.main import parse_args

    path = write_recipe(tmp_path / "recipe.json", {"format": "etfuser-recipe/1", "tasks": {
        "expression": {"rows": {"et-fuser": {"learning_rate": 1e-3}}}}})
    with pytest.raises(SystemExit):
        parse_args(["--recipe", str(path), "--learning-rate", "1e-3"])
    assert "--recipe and --learning-rate" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "is not JSON"),
    (json.dumps({"format": "other"}), "expected format 'etfuser-recipe/1', got 'other'"),
    (json.dumps({"format": "etfuser-recipe/1", "tasks": {}}), "chooses nothing"),
    (json.dumps({"format": "etfuser-recipe/1", "tasks": {"expression": {"rows": {}}}}), "has no 'rows' mapping"),
    (json.dumps({"format": "etfuser-recipe/1", "tasks": {"expression": {"rows": {"et-fuser": {"lr": 1}}}}}),
     r"tasks.expression.rows.et-fuser: expected keys among"),
    (json.dumps({"format": "etfuser-recipe/1", "tasks": {"expression": {"rows": {"et-fuser": {"learning_rate": -1}}}}}),
     r"et-fuser.learning_rate: expected a positive number, got -1"),
    (json.dumps({"format": "etfuser-recipe/1", "tasks": {"expression": {"rows": {"et-fuser": {
        "learning_rate": 1e-3, "settings": [1]}}}}}), r"et-fuser.settings: expected a mapping"),
])
def test_recipe_file_bad_input_is_named(tmp_path, content, message):
    path = tmp_path / "recipe.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_recipe(path)


def test_recipe_file_leaves_tasks_it_does_not_name_alone():
    (expression,) = resolve_tasks(["expression"], synthetic=True)
    assert task_fields({"tasks": {"age_group": {"rows": {"et-fuser": {"learning_rate": 1e-3}}}}}, expression) == {}


def test_recipe_file_of_an_augmentation_sweep_keeps_et_fusers_grid_and_adds_its_candidates(monkeypatch, tmp_path):
    """A candidate at et-fuser's tuned setting reads the tokens its task chose (the grid on age group): its recipe
    trains et-fuser on that grid, as the sweep did, and its candidates add to those that chose the setting."""
    from etfuser_hf.training.validation_sweep import augmentation_candidates, candidate_record

    (base,) = resolve_tasks(["age_group"], synthetic=True)
    assert base.main_tokens == "spatial"
    (candidate,) = augmentation_candidates(base, [ROWS["et-fuser"]], [{"level": "light", "views": 2}])
    record = candidate_record(base, candidate, [0.7, 0.72])
    assert record["main_tokens"] == "spatial" and record["validation"]["mean"] == pytest.approx(0.71)
    path = write_recipe(tmp_path / "recipe.json", sweep_recipe({"age_group": {"et-fuser": record}},
                                                               {"age_group": "accuracy"}, {"age_group": {"et-fuser": 4}},
                                                               "python training/sweep.py ...", [0, 1],
                                                               builds_on_defaults=True))
    (task,) = resolve_tasks(["age_group"], synthetic=True, recipe=read_recipe(path))
    assert task.main_tokens == "spatial"
    assert task.candidates_per_row["et-fuser"] == base.candidates_per_row["et-fuser"] + 4
    from_recipe = what_the_trainer_gets(monkeypatch, tmp_path, ROWS["et-fuser"], task)
    swept = what_the_trainer_gets(monkeypatch, tmp_path, candidate.as_row(), base,
                                  learning_rate=candidate.learning_rate)
    assert from_recipe == swept and from_recipe[1]["prior_feature"] == base.spatial["prior_feature"]


def test_recipe_file_bad_main_tokens_is_refused_by_name(tmp_path):
    recipe = {"format": "etfuser-recipe/1", "tasks": {"age_group": {"main_tokens": "grid", "rows": {
        "et-fuser": {"learning_rate": 1e-3}}}}}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    with pytest.raises(ValueError, match="tasks.age_group.main_tokens: expected 'pooled' or 'spatial', got 'grid'"):
        read_recipe(path)


def test_recipe_file_row_tuned_as_another_trains_with_its_own_choice(monkeypatch, tmp_path):
    """concat-mlp-grid is tuned as concat-mlp; where a sweep chose for both, each trains with its own setting."""
    from etfuser_hf.training.validation_sweep import augmentation_candidates, candidate_record

    (base,) = resolve_tasks(["expression"], synthetic=True)
    settings = {"concat-mlp": {"level": "light", "views": 2}, "concat-mlp-grid": {"level": "standard", "views": 4}}
    chosen = {}
    for row, setting in settings.items():
        (candidate,) = augmentation_candidates(base, [ROWS[row]], [setting])
        chosen[row] = (candidate, candidate_record(base, candidate, [0.5, 0.5]))
    path = write_recipe(tmp_path / "recipe.json", sweep_recipe(
        {"expression": {row: record for row, (_, record) in chosen.items()}}, {"expression": "accuracy"},
        {"expression": {row: 1 for row in chosen}}, "python training/sweep.py ...", [0, 1], builds_on_defaults=True))
    (task,) = resolve_tasks(["expression"], synthetic=True, recipe=read_recipe(path))
    for row, (candidate, _) in chosen.items():
        from_recipe = what_the_trainer_gets(monkeypatch, tmp_path, ROWS[row], task)
        swept = what_the_trainer_gets(monkeypatch, tmp_path, candidate.as_row(), base,
                                      learning_rate=candidate.learning_rate)
        assert from_recipe == swept and from_recipe[1]["augmentation"] == settings[row]


@pytest.mark.parametrize("file_name, task_names", [("synthetic-augmentation.json", ["expression", "age_group"]),
                                                    ("synthetic-augmentation-landmarks.json", ["landmarks"])])
def test_the_defaults_train_each_row_with_its_shipped_sweeps_choice_within_the_main_jobs_budget(file_name, task_names):
    """recipes/synthetic-augmentation*.json (docs/recipe.md, the augmentation sweeps at the parity sweep's rates) are
    valid recipes at the defaults' rates, and the synthetic defaults (`tasks.SYNTHETIC_TASKS`) train each swept row
    with its choice where that fits the main job's budget (at most `MAIN_JOB_MAX_VIEWS` views), else with a setting
    that does; its 4 candidates counted on top of the parity sweep's 10. `--recipe` with the file trains the choices."""
    from pathlib import Path

    from etfuser_hf.training.comparison.tasks import MAIN_JOB_MAX_VIEWS, PARITY_CANDIDATES

    path = Path(__file__).resolve().parents[2] / "recipes" / file_name
    recipe = read_recipe(path)
    defaults = resolve_tasks(task_names, synthetic=True)
    chosen_tasks = {task.name: task for task in resolve_tasks(task_names, synthetic=True, recipe=recipe)}
    for task in defaults:
        chosen = recipe["tasks"][task.name]["rows"]
        assert recipe["tasks"][task.name]["candidates_per_row"] == {row: 4 for row in chosen}
        for name, setting in chosen.items():
            row, choice = ROWS[name], setting["settings"]["augmentation"]
            assert chosen_tasks[task.name].tuned_overrides(row)["augmentation"] == choice, name
            assert task.tuned_learning_rate(row) == pytest.approx(setting["learning_rate"]), name
            assert task.tuned_overrides(row).get("backbone_learning_rate_scale", 1.0) == pytest.approx(
                setting["backbone_learning_rate_scale"]), name
            trains_with = task.tuned_overrides(row).get("augmentation", {"level": "none"})
            if choice.get("views", 1) <= MAIN_JOB_MAX_VIEWS:
                assert trains_with == choice, name
            assert trains_with.get("views", 1) <= MAIN_JOB_MAX_VIEWS, name
            assert task.candidates_per_row[name] == PARITY_CANDIDATES[name] + 4, name
        if "main_tokens" in recipe["tasks"][task.name]:
            assert task.main_tokens == recipe["tasks"][task.name]["main_tokens"]
