"""The validation sweep behind the recipe (training/validation_sweep.py, training/sweep.py) and per-row learning
rates: a sweep never predicts the test split, speed-ups give the new modules a faster rate than the canonical model,
and the rates chosen per row reach the Trainer. Select with `-k "split or seed or canonical"`."""

from __future__ import annotations

import dataclasses

import datasets
import pytest

from etfuser_hf import ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.training.comparison import protocol
from etfuser_hf.training.comparison.protocol import ProtocolContext, train_run
from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
from etfuser_hf.training.comparison.splits import synthetic_splits
from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS, FaceTask, resolve_tasks
from etfuser_hf.training.validation_sweep import best_candidates, render_sweep, sweep_candidates, train_candidates

ROWS = {row.name: row for row in PROTOCOL_ROWS}
TASK = FaceTask("expression", "expression", "single_label_classification", "expression", 1e-3,
                row_learning_rates={"et-fuser-priors-only": 3e-4, "concat-mlp": 3e-3},
                row_overrides={"concat-mlp": {"backbone_learning_rate_scale": 1 / 3}})


def test_validation_sweep_never_predicts_the_test_split(tmp_path):
    prior_dirs = ensure_face_priors(names=("face_recognition", "expression"))
    splits, _ = synthetic_splits({"train": 8, "validation": 8, "test": 4}, image_size=64, seed=3)
    # A test split that cannot be batched: any prediction on it raises, so the sweep passing proves it never looked.
    labels = splits["test"].features["expression"]
    broken = datasets.Dataset.from_dict({**splits["test"].to_dict(), "expression": [99] * 4},
                                        features=datasets.Features({**splits["test"].features,
                                                                    "expression": datasets.Value("int64")}))
    splits = datasets.DatasetDict({**splits, "test": broken})
    context = ProtocolContext(splits, prior_dirs, ETFuserImageProcessor(size={"height": 64, "width": 64}), 64,
                              tmp_path, {"max_steps": 2, "per_device_train_batch_size": 4, "disable_tqdm": True}, None, {"expression": labels.names})
    candidates = sweep_candidates(TASK, [ROWS["canonical"], ROWS["et-fuser"]], [1e-3])
    records = train_candidates(TASK, candidates, [0], context)
    assert [record["row"] for record in records] == ["canonical", "et-fuser"]
    assert all(0.0 <= record["validation"]["mean"] <= 1.0 and len(record["per_seed"]) == 1 for record in records)
    with pytest.raises(ValueError, match="outside id2label"):
        train_run(ROWS["canonical"], TASK, 0, context)  # the planted test split does raise when predicted


def test_speedups_give_new_modules_and_heads_a_faster_rate_and_the_canonical_model_the_grid_rate():
    candidates = sweep_candidates(TASK, [ROWS["canonical"], ROWS["et-fuser"], ROWS["et-fuser-priors-only"]],
                                  [1e-3, 2e-3], new_module_speedups=[1, 3],
                                  priors_only_learning_rates=[1e-4, 3e-4, 1e-3, 3e-3])
    by_row = {}
    for candidate in candidates:
        by_row.setdefault(candidate.row.name, []).append(candidate)
    grid = [(1e-3, 1.0), (3e-3, 1 / 3), (2e-3, 1.0), (6e-3, 1 / 3)]
    for row in ("et-fuser", "canonical"):  # the canonical row's head is new too: the same grid
        # pytest.approx compares flat sequences only (9.2 refuses nested ones): one pair at a time
        pairs = [(c.learning_rate, c.backbone_learning_rate_scale) for c in by_row[row]]
        assert len(pairs) == len(grid)
        for pair, expected in zip(pairs, grid):
            assert pair == pytest.approx(expected)
    assert [c.learning_rate for c in by_row["et-fuser-priors-only"]] == [1e-4, 3e-4, 1e-3, 3e-3]
    fast = by_row["et-fuser"][1]
    row = fast.as_row()
    assert row.overrides["backbone_learning_rate_scale"] == pytest.approx(1 / 3)
    assert fast.learning_rate * row.overrides["backbone_learning_rate_scale"] == pytest.approx(1e-3)
    assert by_row["canonical"][0].as_row().overrides["backbone_learning_rate_scale"] == 1.0  # nothing chosen leaks in
    assert len({candidate.as_row().name for candidate in candidates}) == len(candidates)  # own checkpoint folders


def test_best_candidate_follows_the_metrics_direction_and_is_marked():
    records = [{"candidate": f"r{i}", "row": "et-fuser", "learning_rate": rate, "backbone_learning_rate_scale": 1.0,
                "validation": {"mean": mean, "std": 0.0}, "per_seed": [mean]}
               for i, (rate, mean) in enumerate([(1e-3, 0.5), (3e-3, 0.7), (1e-2, 0.6)])]
    assert best_candidates(TASK, records)["et-fuser"]["learning_rate"] == 3e-3
    assert best_candidates(SYNTHETIC_TASKS["landmarks"], records)["et-fuser"]["learning_rate"] == 1e-3  # NME: lower
    markdown = render_sweep(TASK, records, [0])
    assert "| et-fuser | 0.003 | 1 | **0.7000 ± 0.0000** |" in markdown and "validation split only" in markdown


def test_row_learning_rates_reach_the_trainer_and_learning_rate_flag_replaces_them(monkeypatch, tmp_path):
    seen, built = {}, {}

    def fake_train_model(name, *args, **kwargs):
        seen[name] = kwargs["learning_rate"]
        raise StopIteration  # the model is built; what the Trainer would get is all this test needs

    monkeypatch.setattr(protocol, "train_model", fake_train_model)
    def fake_build_task_model(task, *args, **overrides):
        built[len(built)] = overrides
        return type("Model", (), {"config": None})()

    monkeypatch.setattr(protocol, "build_task_model", fake_build_task_model)
    monkeypatch.setattr(ProtocolContext, "collator", lambda self, task, model, prior_feature=None: None)
    context = ProtocolContext({"train": datasets.Dataset.from_dict({}), "validation": None, "test": None}, {}, None, 64,
                              tmp_path, {})
    for row in ("canonical", "et-fuser-priors-only", "concat-mlp"):
        with pytest.raises(StopIteration):
            train_run(ROWS[row], TASK, 0, context)
    assert seen == {"canonical": 1e-3, "et-fuser-priors-only": 3e-4, "concat-mlp": 3e-3}
    assert "backbone_learning_rate_scale" not in built[0] and built[2]["backbone_learning_rate_scale"] == 1 / 3
    assert built[2]["fusion_mode"] == "concat_priors"
    with pytest.raises(StopIteration):
        train_run(ROWS["canonical"], TASK, 0, context, learning_rate=5e-2)
    assert seen["canonical"] == 5e-2
    (flagged,) = resolve_tasks(["age_group"], synthetic=True, learning_rate=1e-4)
    base = SYNTHETIC_TASKS["age_group"]
    assert flagged.row_learning_rates == {} == flagged.row_overrides
    assert flagged.row_learning_rate("et-fuser-priors-only") == 1e-4
    assert dataclasses.replace(flagged, learning_rate=base.learning_rate).canonical == base.canonical


def test_etfuser_sweep_runs_the_sweep_job_and_writes_its_tables(tmp_path, monkeypatch):
    """`etfuser sweep` (the same job as training/sweep.py): its own options on top of the main job's, and sweep.md /
    sweep.json in --output-dir, on a shrunken synthetic default."""
    import json

    from etfuser_hf.hub.cli import main

    monkeypatch.chdir(tmp_path)
    main(["sweep", "--tasks", "expression", "--rows", "canonical", "--learning-rates", "1e-3", "3e-3",
          "--num-train", "8", "--num-validation", "4", "--num-test", "4", "--image-size", "64", "--max-steps", "1",
          "--batch-size", "4", "--seeds", "1", "--workers", "1", "--priors", "expression", "face_recognition"])
    summary = json.loads((tmp_path / "runs" / "sweep" / "sweep.json").read_text())
    assert summary["seeds"] == [0] and list(summary["tasks"]) == ["expression"]
    assert [(record["row"], record["learning_rate"]) for record in summary["tasks"]["expression"]] == [
        ("canonical", 1e-3), ("canonical", 3e-3)]
    table = (tmp_path / "runs" / "sweep" / "sweep.md").read_text()
    assert table.startswith("SYNTHETIC data; validation split only.") and "| canonical | 0.003 | 1 |" in table
