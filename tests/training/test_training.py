"""Training with the Trainer: prior-feature cache, bf16 on CPU, resume after interruption, early stopping, LoRA,
significance tests, the optional rows, the run folder and bad inputs (the two-process run: test_distributed.py)."""

from __future__ import annotations

import copy
import json

import datasets
import numpy as np
import pytest
import torch
from conftest import tiny_etfuser_config, tiny_priors
from PIL import Image
from safetensors.torch import load_file
from transformers import Trainer

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator, MultiTaskFaceCollator
from etfuser_hf.data.feature_cache import PriorFeatureCache, prior_fingerprint
from etfuser_hf.data.labels import check_label_column
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.training.comparison.rows import MAIN_ROW, OPTIONAL_ROWS, register_row
from etfuser_hf.training.comparison.tasks import FaceTask
from etfuser_hf.training.report.multitask_table import multitask_table
from etfuser_hf.training.report.plots import save_plots
from etfuser_hf.training.report.run_writer import write_run_folder
from etfuser_hf.training.report.statistics import mcnemar_pvalue, paired_permutation_pvalue
from etfuser_hf.training.report.task_tables import task_table
from etfuser_hf.training.run.measurements import mean_prior_attention
from etfuser_hf.training.run.probes import fit_probe
from etfuser_hf.training.run.trainer import (
    ETFuserTrainer,
    RunResult,
    apply_lora,
    selected_evaluation,
    train_model,
    train_multitask_model,
    training_arguments,
)


@pytest.fixture(scope="module")
def faces():
    return make_synthetic_faces(12, image_size=32, seed=3)


@pytest.fixture
def processor():
    return ETFuserImageProcessor(size={"height": 32, "width": 32})


def tiny_model(seed: int = 0, **overrides) -> ETFuserForImageClassification:
    torch.manual_seed(seed)
    return ETFuserForImageClassification(tiny_etfuser_config(num_labels=7, **overrides))


def quiet_arguments(output_dir, **overrides):
    settings = dict(num_train_epochs=1, per_device_train_batch_size=4, eval_strategy="no", save_strategy="no",
                    load_best_model_at_end=False, logging_steps=1, disable_tqdm=True, learning_rate=1e-3,
                    warmup_steps=0, lr_scheduler_type="constant")
    return training_arguments(output_dir, **{**settings, **overrides})


# ----------------------------------------------------------------------------------------------------------------------
# prior-feature cache
# ----------------------------------------------------------------------------------------------------------------------


def test_cached_features_give_the_uncached_loss(faces, processor, tmp_path):
    model = tiny_model().eval()
    cached = PriorFeatureCache(model, processor, tmp_path)(faces)
    assert {"prior__vit", "prior__convnext", "prior__clip"} <= set(cached.column_names)
    rows = [cached[i] for i in range(6)]
    with_cache = FaceCollator(processor, "expression", 7)(rows)
    without = FaceCollator(processor, "expression", 7, use_cached_features=False)(rows)
    assert "prior_features" in with_cache and "prior_features" not in without
    torch.testing.assert_close(model(**with_cache).loss, model(**without).loss, rtol=1e-5, atol=1e-6)


def test_cache_is_reused_and_invalidated_by_prior_changes(faces, processor, tmp_path):
    model = tiny_model().eval()
    PriorFeatureCache(model, processor, tmp_path)(faces)
    assert len(list(tmp_path.glob("prior-features-*.arrow"))) == 1
    PriorFeatureCache(model, processor, tmp_path)(faces)  # same priors, same images: read back
    assert len(list(tmp_path.glob("prior-features-*.arrow"))) == 1

    fingerprint = prior_fingerprint(model, "vit")
    changed_weights = copy.deepcopy(model)
    with torch.no_grad():
        changed_weights.etfuser.priors["vit"].embeddings.cls_token.add_(0.1)
    assert prior_fingerprint(changed_weights, "vit") != fingerprint
    changed_contract = copy.deepcopy(model)
    changed_contract.config.priors["vit"].image_mean = [0.4, 0.4, 0.4]
    assert prior_fingerprint(changed_contract, "vit") != fingerprint
    PriorFeatureCache(changed_weights, processor, tmp_path)(faces)
    assert len(list(tmp_path.glob("prior-features-*.arrow"))) == 2


def test_one_run_of_the_priors_fills_every_views_columns_as_a_cache_per_view_would(faces, processor, tmp_path):
    model = tiny_model().eval()
    other = copy.deepcopy(model)  # the same networks, other tokens: the mean token of each
    for name in ("vit", "convnext", "clip"):
        other.config.priors[name].feature = "mean"
    runs = []
    model.etfuser.priors["vit"].register_forward_hook(lambda *_: runs.append("model"))
    other.etfuser.priors["vit"].register_forward_hook(lambda *_: runs.append("other"))
    both = PriorFeatureCache(model, processor, tmp_path / "both", batch_size=4, more_views={"mean": other})(faces)
    assert set(runs) == {"model"} and len(runs) == 1 + 3  # the columns' probe, then 12 faces in batches of 4
    apart = PriorFeatureCache(other, processor, tmp_path / "apart", view="mean")(faces)
    own = PriorFeatureCache(model, processor, tmp_path / "own")(faces)
    for name in ("vit", "convnext", "clip"):
        np.testing.assert_array_equal(np.asarray(both[f"prior__{name}@mean"]), np.asarray(apart[f"prior__{name}@mean"]))
        np.testing.assert_array_equal(np.asarray(both[f"prior__{name}"]), np.asarray(own[f"prior__{name}"]))
    assert np.asarray(both["prior__convnext@mean"]).shape[1:] == (1, 16)  # its 3 top-k tokens in the recipe's view
    assert np.asarray(both["prior__convnext"]).shape[1:] == (3, 16)
    runs.clear()
    PriorFeatureCache(model, processor, tmp_path / "both", batch_size=4, more_views={"mean": other})(faces)
    assert runs == ["model"]  # read back: only the columns' probe runs


def test_a_view_of_other_networks_is_refused_by_name(processor, tmp_path):
    model = tiny_model().eval()
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.etfuser.priors["vit"].embeddings.cls_token.add_(0.1)
    with pytest.raises(ValueError, match=r"more_views\['grid'\]: prior 'vit' is another network or reads another input"):
        PriorFeatureCache(model, processor, tmp_path, more_views={"grid": changed})
    other_input = copy.deepcopy(model)
    other_input.config.priors["clip"].image_mean = [0.4, 0.4, 0.4]
    with pytest.raises(ValueError, match=r"prior 'clip' is another network or reads another input"):
        PriorFeatureCache(model, processor, tmp_path, more_views={"grid": other_input})
    with pytest.raises(ValueError, match=r"more_views\['x'\]: expected the priors \['clip', 'convnext', 'vit'\]"):
        PriorFeatureCache(model, processor, tmp_path, more_views={"x": tiny_model(priors={"vit": tiny_priors()["vit"]})})
    with pytest.raises(ValueError, match="view '' is the cache's own view"):
        PriorFeatureCache(model, processor, tmp_path, more_views={"": copy.deepcopy(model)})


def test_empty_dataset_is_refused(faces, processor, tmp_path):
    with pytest.raises(ValueError, match="dataset is empty"):
        PriorFeatureCache(tiny_model(), processor, tmp_path)(faces.select([]))


def test_collator_names_the_bad_label(faces, processor):
    rows = [dict(faces[0]), dict(faces[1], expression=9)]
    with pytest.raises(ValueError, match=r"expression: label 9 is outside id2label \(0..6\)"):
        FaceCollator(processor, "expression", 7)(rows)


def test_multitask_collator_gives_one_label_tensor_per_task(faces, processor):
    rows = [faces[i] for i in range(3)]
    batch = MultiTaskFaceCollator(processor, {"expression": 7, "mask": 2}, include_landmarks=True)(rows)
    assert "labels" not in batch and batch["pixel_values"].shape == (3, 3, 32, 32)
    assert batch["expression_labels"].tolist() == [row["expression"] for row in rows]
    assert batch["mask_labels"].tolist() == [row["mask"] for row in rows] and batch["landmarks"].shape == (3, 68, 2)
    with pytest.raises(ValueError, match=r"mask: label 2 is outside id2label \(0..1\)"):
        MultiTaskFaceCollator(processor, {"expression": 7, "mask": 2})([dict(faces[0], mask=2)])
    with pytest.raises(ValueError, match="tasks must name at least one label column"):
        MultiTaskFaceCollator(processor, {})


# ----------------------------------------------------------------------------------------------------------------------
# Trainer runs
# ----------------------------------------------------------------------------------------------------------------------


def test_trainer_steps_with_bf16_on_cpu(faces, processor, tmp_path):
    model = tiny_model()
    before = model.classifier.dense.weight.detach().clone()
    trainer = Trainer(model=model, args=quiet_arguments(tmp_path, bf16=True, max_steps=3), train_dataset=faces,
                      data_collator=FaceCollator(processor, "expression", 7))
    result = trainer.train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
    assert not torch.equal(model.classifier.dense.weight, before)


@pytest.mark.parametrize("first, second", [("bf16", "fp32"), ("fp32", "bf16")])
def test_a_second_trainer_computes_in_its_own_precision(faces, processor, tmp_path, first, second):
    model = tiny_model()
    seen = []
    # inside the model's forward (accelerate wraps `forward`, not the module's call and its hooks)
    model.base_model.register_forward_pre_hook(lambda module, inputs: seen.append(torch.is_autocast_enabled("cpu")))
    collator = FaceCollator(processor, "expression", 7)
    for precision in (first, second):
        seen.clear()
        arguments = quiet_arguments(tmp_path / precision, bf16=precision == "bf16", max_steps=1)
        ETFuserTrainer(model=model, args=arguments, train_dataset=faces, data_collator=collator).train()
        assert seen == [precision == "bf16"], precision


def test_resume_after_interruption_matches_an_uninterrupted_run(faces, processor, tmp_path):
    collator = FaceCollator(processor, "expression", 7)
    settings = dict(max_steps=6, save_strategy="steps", save_steps=3, save_total_limit=None, data_seed=0)

    uninterrupted = tiny_model()
    Trainer(model=uninterrupted, args=quiet_arguments(tmp_path / "full", **settings), train_dataset=faces,
            data_collator=collator).train()

    interrupted = tiny_model()
    Trainer(model=interrupted, args=quiet_arguments(tmp_path / "part", **{**settings, "max_steps": 3}),
            train_dataset=faces, data_collator=collator).train()  # "killed" after the checkpoint at step 3
    resumed = tiny_model(seed=123)  # a fresh process builds a differently initialised model
    Trainer(model=resumed, args=quiet_arguments(tmp_path / "part", **settings), train_dataset=faces,
            data_collator=collator).train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-3"))

    expected = uninterrupted.state_dict()
    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_lora_training_saves_loads_and_merges(faces, processor, tmp_path):
    model = apply_lora(tiny_model(), rank=4)
    Trainer(model=model, args=quiet_arguments(tmp_path, max_steps=2, learning_rate=5e-2), train_dataset=faces,
            data_collator=FaceCollator(processor, "expression", 7)).train()
    model.save_pretrained(tmp_path / "adapter")
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any("lora_A" in key for key in adapter) and not any(".priors." in key for key in adapter)
    pixel_values = torch.rand(2, 3, 32, 32)
    expected = model.eval()(pixel_values).logits
    merged = model.merge_and_unload()
    torch.testing.assert_close(merged(pixel_values).logits, expected, rtol=1e-4, atol=1e-5)
    merged.save_pretrained(tmp_path / "merged")  # what the protocol keeps: adapters merged, new modules included
    reloaded = ETFuserForImageClassification.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# significance tests
# ----------------------------------------------------------------------------------------------------------------------


def test_pvalues_on_constructed_outcomes():
    rng = np.random.default_rng(0)
    same = rng.random(200) < 0.6
    assert paired_permutation_pvalue(same, same) == 1.0 and mcnemar_pvalue(same, same) == 1.0
    always, never = np.ones(200, bool), np.zeros(200, bool)
    assert paired_permutation_pvalue(always, never) < 0.001 and mcnemar_pvalue(always, never) < 1e-10
    # 10 discordant pairs split 6/4: exact two-sided binomial p = 2 * P(X <= 4 | n=10) = 0.7539
    a = np.array([1] * 6 + [0] * 4 + [1] * 50, bool)
    b = np.array([0] * 6 + [1] * 4 + [1] * 50, bool)
    assert mcnemar_pvalue(a, b) == pytest.approx(0.75390625)
    assert 0.3 < paired_permutation_pvalue(a, b) <= 1.0
    with pytest.raises(ValueError, match="same examples"):
        paired_permutation_pvalue(a, b[:-1])


def test_train_model_evaluates_per_epoch_and_stops_early(faces, processor, tmp_path):
    collator = FaceCollator(processor, "expression", 7)
    # learning rate 0: the eval metric never improves, so patience 1 must end the run long before 6 epochs
    result, trainer = train_model("tiny", "a tiny ET-Fuser", tiny_model(), faces.select(range(8)),
                                  faces.select(range(8, 12)), collator, tmp_path, early_stopping_patience=1,
                                  num_train_epochs=6, per_device_train_batch_size=4, learning_rate=0.0,
                                  warmup_steps=0, disable_tqdm=True, logging_steps=1)
    evaluations = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    assert 1 <= len(evaluations) <= 2 and trainer.state.epoch <= 2
    assert set(result.metrics) == {"accuracy", "macro_f1"} and 0 <= result.metrics["accuracy"] <= 1
    assert result.predictions.shape == (4,) and result.logits.shape == (4, 7)
    assert result.metrics["accuracy"] == pytest.approx(np.mean(result.predictions == np.asarray(faces[8:12]["expression"])))


def test_selected_checkpoints_validation_metrics_are_what_evaluating_it_again_gives(faces, processor, tmp_path):
    """train_model reads the selected checkpoint's validation metrics from the log instead of a second pass; a
    second pass over the validation split with the restored weights gives the same numbers."""
    collator = FaceCollator(processor, "expression", 7)
    result, trainer = train_model("tiny", "a tiny ET-Fuser", tiny_model(), faces.select(range(8)),
                                  faces.select(range(8, 12)), collator, tmp_path, num_train_epochs=3,
                                  per_device_train_batch_size=4, learning_rate=5e-2, warmup_steps=0,
                                  disable_tqdm=True, logging_steps=1, test_dataset=faces.select(range(4)))
    assert selected_evaluation(trainer) is not None and trainer.state.best_model_checkpoint
    again = trainer.predict(faces.select(range(8, 12))).metrics
    assert result.validation_metrics == pytest.approx({"accuracy": again["test_accuracy"],
                                                       "macro_f1": again["test_macro_f1"]})


def test_collator_view_serves_the_same_batches_from_only_the_columns_it_reads(faces, processor, tmp_path):
    model = tiny_model().eval()
    cached = PriorFeatureCache(model, processor, tmp_path)(faces)
    collator = FaceCollator(processor, "expression", 7)
    view = collator.view(cached)
    assert set(view.column_names) == {"image", "expression", "prior__vit", "prior__convnext", "prior__clip"}
    # images stay encoded until the collator decodes them (an undecodable one costs its row, not the run)
    assert isinstance(view[0]["prior__vit"], np.ndarray) and set(view[0]["image"]) == {"bytes", "path"}
    full, narrowed = collator([cached[i] for i in range(4)]), collator([view[i] for i in range(4)])
    torch.testing.assert_close(full["pixel_values"], narrowed["pixel_values"])
    torch.testing.assert_close(full["labels"], narrowed["labels"])
    for name, features in full["prior_features"].items():
        torch.testing.assert_close(features, narrowed["prior_features"][name])
    landmarks = FaceCollator(processor, "landmarks", 0, use_cached_features=False, problem_type="landmarks")
    assert set(landmarks.view(cached).column_names) == {"image", "landmarks"}
    torch.testing.assert_close(landmarks([cached[0]])["labels"], landmarks([landmarks.view(cached)[0]])["labels"])
    with pytest.raises(ValueError, match="has no column"):
        FaceCollator(processor, "age", 7).view(cached)


def test_train_multitask_model_gives_each_branch_its_predictions(faces, processor, tmp_path):
    from etfuser_hf import ETFuserForMultiTaskFaceAnalysis

    torch.manual_seed(0)
    tasks = {"expression": {"problem_type": "single_label_classification", "num_labels": 7},
             "mask": {"problem_type": "single_label_classification", "num_labels": 2}}
    model = ETFuserForMultiTaskFaceAnalysis(tiny_etfuser_config(tasks=tasks))
    results, trainer = train_multitask_model(
        "multitask", "tiny", model, faces.select(range(8)), faces.select(range(8, 12)),
        MultiTaskFaceCollator(processor, {"expression": 7, "mask": 2}), tmp_path, num_train_epochs=1,
        per_device_train_batch_size=4, disable_tqdm=True)
    assert set(results) == {"expression", "mask"} and trainer.args.metric_for_best_model == "mean_accuracy"
    for task, num_labels in (("expression", 7), ("mask", 2)):
        labels = np.asarray(faces[8:12][task])
        assert results[task].logits.shape == (4, num_labels)
        assert results[task].metrics["accuracy"] == pytest.approx(np.mean(results[task].predictions == labels))
    evaluation = next(entry for entry in trainer.state.log_history if "eval_mean_accuracy" in entry)
    assert evaluation["eval_mean_accuracy"] == pytest.approx(
        (evaluation["eval_expression_accuracy"] + evaluation["eval_mask_accuracy"]) / 2)


def test_multitask_table_pairs_each_branch_with_its_single_task_model():
    labels = {"expression": np.tile([0, 1, 2], 20), "mask": np.tile([0, 1], 30)}

    def result(predictions):
        return RunResult("v", "", predictions, np.eye(3)[predictions],
                             {"accuracy": float(np.mean(predictions == labels["expression"])), "macro_f1": 0.5})

    single = {"expression": result(labels["expression"].copy()), "mask": result(labels["mask"].copy())}
    multi = {"expression": result(np.zeros(60, int)), "mask": result(labels["mask"].copy())}
    params = [{"params_total": 10, "params_trainable": 4}, {"params_total": 10, "params_trainable": 4}]
    comparison = multitask_table(single, multi, labels, params, {"params_total": 12, "params_trainable": 5})
    expression, mask = comparison["tasks"]
    assert expression["task"] == "expression" and expression["p_value"] < 0.01 and expression["mcnemar_p"] < 1e-6
    assert mask["p_value"] == 1.0 and mask["mcnemar_p"] == 1.0
    assert comparison["params"] == {"multi_task": {"params_total": 12, "params_trainable": 5},
                                    "single_task_models": {"params_total": 20, "params_trainable": 8}}


def test_fit_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 160)
    features = 3 * np.eye(3)[labels] + rng.normal(0, 0.3, (160, 3))
    linear = fit_probe("probe", "linear", features[:120], labels[:120], features[120:], labels[120:])
    mlp = fit_probe("mlp", "mlp", features[:120], labels[:120], features[120:], labels[120:], hidden_size=16)
    assert linear.metrics["accuracy"] > 0.95 and mlp.metrics["accuracy"] > 0.95 and linear.logits.shape == (40, 3)


def test_mean_prior_attention_is_a_distribution_over_the_priors(faces, processor):
    model = tiny_model().eval()
    attention = mean_prior_attention(model, faces, FaceCollator(processor, "expression", 7), batch_size=5)
    assert list(attention) == list(model.config.priors)
    assert sum(attention.values()) == pytest.approx(1.0, abs=1e-3) and all(v > 0 for v in attention.values())


# ----------------------------------------------------------------------------------------------------------------------
# optional rows
# ----------------------------------------------------------------------------------------------------------------------


def test_every_optional_row_builds_and_trains_a_step(faces, processor):
    batch = FaceCollator(processor, "expression", 7, include_landmarks=True)([faces[i] for i in range(2)])
    for name, row in OPTIONAL_ROWS.items():
        overrides = dict(row.overrides)
        if row.num_priors is not None:
            overrides["priors"] = dict(list(tiny_priors().items())[:row.num_priors])
        model = tiny_model(**overrides).train()
        loss = model(**batch).loss
        loss.backward()
        assert torch.isfinite(loss), name
        expected_priors = 0 if overrides.get("fusion_mode") == "none" else row.num_priors or len(tiny_priors())
        assert len(model.etfuser.priors) == expected_priors, name


@pytest.fixture
def empty_working_folder(tmp_path, monkeypatch):
    """The main job's flags parsed from an empty folder: the default --output-dir, runs/etfuser-synthetic, may hold
    the user's own earlier run, which parsing rightly refuses to write into."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_register_row_refuses_duplicates_and_unknown_groups():
    with pytest.raises(ValueError, match="row 'mask-isolated' is already registered"):
        register_row("mask-isolated", "again", attention_mask_strategy="isolated")
    with pytest.raises(ValueError, match="row 'canonical' is already registered"):  # a protocol row's name
        register_row("canonical", "again", fusion_mode="none")
    with pytest.raises(ValueError, match="group must be one of"):
        register_row("new-one", "text", group="extra")
    assert "new-one" not in OPTIONAL_ROWS and "canonical" not in OPTIONAL_ROWS


def test_the_flags_select_protocol_and_optional_rows(empty_working_folder):
    from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS
    from etfuser_hf.training.main import parse_args, protocol_rows

    expression = SYNTHETIC_TASKS["expression"]

    def names(argv, first=True):
        return [row.name for row in protocol_rows(parse_args(argv), expression, first)]

    # expression's et-fuser and concat-mlp read pooled priors (so concat-mlp-pooled would train as concat-mlp)
    assert names([]) == ["et-fuser", "canonical", "concat-mlp", "concat-mlp-grid", "et-fuser-spatial",
                         "et-fuser-priors-only", "probe-best-prior"]
    # age group's concat-mlp reads its own best grid (2x2), so its pooled twin trains too
    assert "concat-mlp-pooled" in [row.name for row in protocol_rows(parse_args([]), SYNTHETIC_TASKS["age_group"], True)]
    assert names(["--no-baselines"]) == ["et-fuser"]
    ablations = names(["--no-baselines", "--ablations", "--priors", "age", "expression", "face_landmarks"])
    # two priors besides the canonical expression net: priors-1 drops one, priors-2 would drop none
    assert "priors-1" in ablations and "priors-2" not in ablations and "mask-isolated" in ablations
    assert "fusion-prepend-token" not in ablations  # the FER net is a CNN: no token sequence to prepend to
    assert not any(name.startswith("aux-") for name in ablations)
    assert names(["--no-baselines", "--companion", "jigsaw", "--variants", "mask-isolated"]) == [
        "et-fuser", "mask-isolated", "aux-jigsaw"]
    assert names(["--ablations"], first=False) == names([])  # opt-in rows go to the first task only
    with pytest.raises(ValueError, match="aux-inpainting: needs a token-sequence canonical model.*scratch-vit"):
        names(["--companion", "inpainting"])
    assert parse_args(["--task", "mask"]).tasks == ["mask"]
    assert parse_args([]).tasks == ["expression", "age_group", "landmarks"] and parse_args([]).seeds == 3


# ----------------------------------------------------------------------------------------------------------------------
# run folder
# ----------------------------------------------------------------------------------------------------------------------


def test_run_folder_has_the_documented_format(tmp_path):
    """The run folder from a protocol summary: metrics.json holds each row's numbers once (its `protocol` tables, no
    second copy), splits.json the splits, results.md the tables; and the plots of the main row's first run."""
    from etfuser_hf.hub.model_card import REQUIRED_METRICS_KEYS

    labels = np.tile([0, 1, 2], 20)
    history = [{"epoch": 1.0, "loss": 1.1}, {"epoch": 1.0, "eval_loss": 0.9, "eval_accuracy": 0.5, "eval_macro_f1": 0.4},
               {"epoch": 2.0, "loss": 0.7}, {"epoch": 2.0, "eval_loss": 0.6, "eval_accuracy": 0.9, "eval_macro_f1": 0.9}]

    def run(name: str, predictions: np.ndarray, accuracy: float) -> RunResult:
        return RunResult(name, name, predictions, np.eye(3)[predictions], {"accuracy": accuracy, "macro_f1": accuracy},
                         history, 2.0, {"accuracy": accuracy}, (predictions == labels).astype(np.float64), "test")

    main = run(MAIN_ROW, labels.copy(), 1.0)
    worse = run("canonical", np.zeros_like(labels), 1 / 3)
    task = FaceTask("expression", "expression", "single_label_classification", "expression")
    table = task_table(task, {MAIN_ROW: [main], "canonical": [worse]}, [0], MAIN_ROW)
    assert table["rows"][1]["p_per_seed_vs_main"][0] < 1e-6  # McNemar on the test predictions
    plots = save_plots(tmp_path / "plots", main, labels, ["a", "b", "c"], {"x": 0.7, "y": 0.3})
    assert plots == ["loss_curve.png", "metric_curve.png", "confusion_matrix.png", "prior_attention.png"]
    for name in plots:
        with Image.open(tmp_path / "plots" / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    splits = {"source": "synthetic", "seed": 1, "sizes": {"train": 10, "validation": 5, "test": 60}}
    summary = {"task": "expression", "problem_type": "single_label_classification", "label_names": ["a", "b", "c"],
               "dataset": {"name": "d", "split": "test", "num_samples": 60, "synthetic": True, "description": ""},
               "model": {"priors": {}, "backbone": "vit"}, "prior_attention": {"x": 0.7, "y": 0.3}, "training": {},
               "protocol": {"splits": splits, "seeds": [0], "tasks": {"expression": table}, "reading": ["r."]}}
    write_run_folder(tmp_path, summary)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(REQUIRED_METRICS_KEYS) <= set(metrics) and "results" not in metrics
    assert metrics["protocol"]["tasks"]["expression"]["main_variant"] == MAIN_ROW
    assert json.loads((tmp_path / "splits.json").read_text()) == splits
    results = (tmp_path / "results.md").read_text()
    assert results.startswith("> **SYNTHETIC data.**") and "Splits (synthetic, seed 1): train 10" in results
    # test accuracy, validation accuracy, test macro-F1 (the task's second metric), then the tests against et-fuser
    assert "| et-fuser | 1.0000 ± 0.0000 | 1.0000 ± 0.0000 | 1.0000 ± 0.0000 | — | — |" in results
    assert "| test accuracy | validation accuracy | test macro_f1 | p vs et-fuser" in results
    assert "| canonical | 0.3333 ± 0.0000 |" in results and "- r." in results


# ----------------------------------------------------------------------------------------------------------------------
# bad inputs (the loaders in etfuser_hf.data.face_datasets check files and rows; these cover what training adds on top)
# ----------------------------------------------------------------------------------------------------------------------


def test_check_label_column_names_the_rows():
    data = datasets.Dataset.from_dict({"label": [0, 1, 9, 2, -1]})
    with pytest.raises(ValueError, match=r"train: 2 label\(s\) in 'label' outside id2label \(0..2\): row 2: 9, row 4: -1"):
        check_label_column(data, "label", 3, "train")
    with pytest.raises(ValueError, match="train: dataset is empty"):
        check_label_column(data.select([]), "label", 3, "train")
    check_label_column(data.select([0, 1, 3]), "label", 3)


def _manifest(folder, rows):
    folder.mkdir()
    for index in range(len(rows)):
        Image.fromarray(np.full((16, 16, 3), 20 * index, np.uint8)).save(folder / f"{index}.png")
    (folder / "labels.csv").write_text("image,mood\n" + "".join(f"{image},{mood}\n" for image, mood in rows))
    return folder / "labels.csv"


def test_load_splits_encodes_manifest_labels_and_reports_bad_rows(tmp_path, empty_working_folder):
    from etfuser_hf.data.face_datasets import FaceDatasetError
    from etfuser_hf.training.comparison.tasks import resolve_tasks
    from etfuser_hf.training.main import load_splits, parse_args

    def splits_of(argv):
        args = parse_args(argv)
        return load_splits(args, resolve_tasks(args.tasks, synthetic=False))

    good = _manifest(tmp_path / "good", [(f"{i}.png", "happy" if i % 2 else "sad") for i in range(10)])
    splits, record = splits_of(["--dataset", str(good), "--task", "mood"])
    assert splits["train"].features["mood"].names == ["happy", "sad"]
    assert {name: len(split) for name, split in splits.items()} == {"train": 6, "validation": 2, "test": 2}
    assert sorted(splits["test"]["mood"]) == [0, 1] and "70/15/15" in record["origin"]["test"]  # stratified

    missing = _manifest(tmp_path / "missing", [(f"{i}.png", "happy") for i in range(3)] + [("gone.png", "sad")])
    with pytest.raises(FaceDatasetError, match=r"labels.csv row 5: image file .*gone.png does not exist"):
        splits_of(["--dataset", str(missing), "--task", "mood"])
    with pytest.raises(ValueError, match=r"no column 'label'; columns: \['image', 'mood'\]"):
        splits_of(["--dataset", str(good), "--task", "label"])
    with pytest.raises(ValueError, match=r"no column 'pose'; columns: \['image', 'mood'\]"):
        splits_of(["--dataset", str(good), "--task", "mood", "--multitask", "pose"])


def test_multitask_columns_must_be_class_labels(empty_working_folder):
    from etfuser_hf.training.comparison.tasks import resolve_tasks
    from etfuser_hf.training.main import load_splits, parse_args

    argv = ["--num-train", "4", "--num-validation", "2", "--num-test", "2", "--image-size", "32", "--tasks",
            "expression"]
    args = parse_args(argv + ["--multitask", "mask", "expression"])
    splits, _ = load_splits(args, resolve_tasks(args.tasks, synthetic=True))
    assert splits["train"].features["mask"].names == ["no_mask", "mask"] and len(splits["test"]) == 2
    with pytest.raises(ValueError, match=r"label column 'landmarks' must be a ClassLabel column"):
        args = parse_args(argv + ["--multitask", "landmarks"])
        load_splits(args, resolve_tasks(args.tasks, synthetic=True))
