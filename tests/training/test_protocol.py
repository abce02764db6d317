"""The paper's comparison (training/comparison/): three disjoint splits fixed by seed, selection on
validation only, a pretrained canonical model that is loaded and trained, the zero-gated fusion, parameter groups,
several seeds, and p-value helpers that agree with scipy. Select with `-k "canonical or split or seed"`."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from conftest import tiny_etfuser_config
from safetensors.torch import load_file
from scipy import stats

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.data.collators import FaceCollator, pixel_values
from etfuser_hf.data.synthetic_faces import make_synthetic_faces
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.training.comparison.protocol import ProtocolContext, train_run
from etfuser_hf.training.comparison.recipe import build_task_model, fusion_attention_implementation
from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
from etfuser_hf.training.comparison.splits import subsample_train, synthetic_splits, user_splits
from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS, FaceTask
from etfuser_hf.training.report.statistics import mcnemar_pvalue, paired_permutation_pvalue, seed_ttest_pvalue
from etfuser_hf.training.report.task_tables import render_task_table, task_table
from etfuser_hf.training.run.trainer import ETFuserTrainer, train_model, training_arguments

CANONICAL_PRIORS = ("face_recognition", "face_landmarks", "age", "expression")


@pytest.fixture(scope="module")
def prior_dirs():
    return ensure_face_priors(names=CANONICAL_PRIORS)


@pytest.fixture(scope="module")
def tiny_splits():
    splits, _ = synthetic_splits({"train": 16, "validation": 8, "test": 8}, image_size=64, seed=7)
    return splits


# ----------------------------------------------------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------------------------------------------------


def _image_hashes(split: datasets.Dataset) -> set[bytes]:
    return {np.asarray(image).tobytes() for image in split["image"]}


def test_synthetic_splits_are_disjoint_and_reproducible_by_seed():
    sizes = {"train": 12, "validation": 6, "test": 6}
    splits, record = synthetic_splits(sizes, image_size=32, seed=11)
    again, _ = synthetic_splits(sizes, image_size=32, seed=11)
    other, _ = synthetic_splits(sizes, image_size=32, seed=12)
    hashes = {name: _image_hashes(split) for name, split in splits.items()}
    assert {name: len(split) for name, split in splits.items()} == sizes == record.sizes
    assert not (hashes["train"] & hashes["validation"]) and not (hashes["train"] & hashes["test"])
    assert not (hashes["validation"] & hashes["test"])
    assert all(_image_hashes(again[name]) == hashes[name] for name in splits)
    assert _image_hashes(other["test"]) != hashes["test"]
    assert record.generator["seed"] == 11 and record.origin["test"].startswith("synthetic sample indices 1000000..1000005")
    with pytest.raises(ValueError, match="every split needs at least one image"):
        synthetic_splits({"train": 4, "validation": 0, "test": 2})


def test_user_dataset_with_train_and_test_only_gets_validation_split_from_train():
    labels = datasets.ClassLabel(names=["a", "b"])
    features = datasets.Features({"x": datasets.Value("int64"), "label": labels})
    train = datasets.Dataset.from_dict({"x": list(range(40)), "label": [i % 2 for i in range(40)]}, features=features)
    test = datasets.Dataset.from_dict({"x": list(range(100, 110)), "label": [i % 2 for i in range(10)]},
                                      features=features)
    splits, record = user_splits(datasets.DatasetDict({"train": train, "test": test}), "mine", "label", seed=3)
    assert set(splits["validation"]["x"]) <= set(range(40)) and set(splits["test"]["x"]) == set(range(100, 110))
    assert not set(splits["validation"]["x"]) & set(splits["train"]["x"])
    assert len(splits["train"]) + len(splits["validation"]) == 40
    assert "never test" in record.origin["validation"]
    assert sorted(splits["validation"]["label"]).count(0) == sorted(splits["validation"]["label"]).count(1)  # stratified


def test_split_selection_reads_validation_never_test(tmp_path):
    """The same training with two different test splits (one with its labels planted all on one class) selects
    the same checkpoint and the same validation metrics; only the reported test metrics differ."""
    data = make_synthetic_faces(24, image_size=32, seed=5)
    train, validation = data.select(range(16)), data.select(range(16, 20))
    test = data.select(range(20, 24))
    planted = test.map(lambda row: {"expression": 0})
    processor = ETFuserImageProcessor(size={"height": 32, "width": 32})
    collator = FaceCollator(processor, "expression", 7, use_cached_features=False)
    outcomes = []
    for name, test_split in (("real", test), ("planted", planted)):
        torch.manual_seed(0)
        model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7, fusion_mode="add_to_pooled"))
        result, trainer = train_model(name, "", model, train, validation, collator, tmp_path / name,
                                        early_stopping_patience=2, test_dataset=test_split, num_train_epochs=3,
                                        per_device_train_batch_size=4, learning_rate=5e-3, disable_tqdm=True)
        outcomes.append((result, trainer.state.best_global_step, model.classifier.dense.weight.detach().clone()))
    (real, best_real, weight_real), (planted_result, best_planted, weight_planted) = outcomes
    assert real.split == planted_result.split == "test"
    assert best_real == best_planted and real.validation_metrics == planted_result.validation_metrics
    torch.testing.assert_close(weight_real, weight_planted)
    np.testing.assert_array_equal(real.predictions, planted_result.predictions)
    assert planted_result.metrics["accuracy"] == pytest.approx(float(np.mean(real.predictions == 0)))


# ----------------------------------------------------------------------------------------------------------------------
# the canonical model
# ----------------------------------------------------------------------------------------------------------------------


def test_pretrained_canonical_model_is_loaded_not_reinitialised_and_is_trained(prior_dirs, tiny_splits, tmp_path):
    task = SYNTHETIC_TASKS["expression"]
    model = build_task_model(task, prior_dirs, list(range(7)), image_size=64)
    saved = load_file(str(prior_dirs["expression"] / "model.safetensors"))
    backbone = model.etfuser.backbone.state_dict()
    assert set(saved) == set(backbone)
    for key, tensor in saved.items():
        torch.testing.assert_close(backbone[key], tensor, msg=key)
    assert "expression" not in model.config.priors and set(model.config.priors) == set(CANONICAL_PRIORS) - {"expression"}
    assert all(parameter.requires_grad for parameter in model.etfuser.backbone.parameters())
    assert not any(parameter.requires_grad for parameter in model.etfuser.priors.parameters())

    context = ProtocolContext(tiny_splits, prior_dirs, ETFuserImageProcessor(size={"height": 64, "width": 64}), 64,
                              tmp_path, {"max_steps": 2, "per_device_train_batch_size": 8, "disable_tqdm": True},
                              None, {"expression": list(range(7))})
    trained = []
    row = next(row for row in PROTOCOL_ROWS if row.name == "canonical")
    train_run(row, task, 0, context, keep_model=trained.append)
    moved = [key for key, tensor in trained[0].etfuser.backbone.state_dict().items()
             if tensor.is_floating_point() and not torch.equal(tensor, saved[key])]
    assert moved, "fine-tuning did not change the canonical model's weights"


def test_recipe_models_attend_eagerly_on_cpu_and_with_sdpa_on_gpu(prior_dirs, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert fusion_attention_implementation() == "eager"
    model = build_task_model(SYNTHETIC_TASKS["expression"], prior_dirs, list(range(7)), image_size=64)
    assert model.config._attn_implementation == "eager"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert fusion_attention_implementation() == "sdpa"


def test_fusion_gate_starts_as_the_canonical_model_alone(prior_dirs):
    task = SYNTHETIC_TASKS["age_group"]
    fused = build_task_model(task, prior_dirs, ["a", "b", "c", "d"], image_size=64).eval()
    alone = build_task_model(task, prior_dirs, ["a", "b", "c", "d"], image_size=64, fusion_mode="none").eval()
    assert torch.count_nonzero(fused.etfuser.fusion_gate) == 0
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(fused.etfuser(pixels).pooler_output, alone.etfuser(pixels).pooler_output)
        fused.etfuser.fusion_gate.fill_(0.5)
        assert not torch.allclose(fused.etfuser(pixels).pooler_output, alone.etfuser(pixels).pooler_output)


def test_cnn_canonical_refuses_prepend_token_and_names_the_modes_that_work(prior_dirs):
    with pytest.raises(ValueError, match=r"prepend_token.*token-sequence backbone.*add_to_pooled.*concat_before_head"):
        build_task_model(SYNTHETIC_TASKS["expression"], prior_dirs, list(range(7)), 64, fusion_mode="prepend_token")
    for mode in ("add_to_pooled", "concat_before_head", "concat_priors"):
        model = build_task_model(SYNTHETIC_TASKS["expression"], prior_dirs, list(range(7)), 64, fusion_mode=mode)
        assert model(torch.rand(1, 3, 64, 64)).logits.shape == (1, 7), mode


def test_canonical_learning_rate_scale_gives_the_backbone_its_own_parameter_group(tmp_path):
    model = ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="add_to_pooled",
                                                              backbone_learning_rate_scale=0.25))
    arguments = training_arguments(tmp_path, learning_rate=1e-3, weight_decay=0.1, eval_strategy="no",
                                   save_strategy="no", load_best_model_at_end=False)
    trainer = ETFuserTrainer(model=model, args=arguments)
    optimizer = trainer.create_optimizer()
    backbone = {id(parameter) for parameter in model.etfuser.backbone.parameters()}
    for group in optimizer.param_groups:
        in_backbone = {id(parameter) in backbone for parameter in group["params"]}
        assert len(in_backbone) == 1
        assert group["lr"] == pytest.approx(2.5e-4 if in_backbone.pop() else 1e-3)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == sum(
        1 for parameter in model.parameters() if parameter.requires_grad)


def test_landmarks_canonical_task_trains_and_reports_per_image_nme(prior_dirs, tiny_splits, tmp_path):
    task = SYNTHETIC_TASKS["landmarks"]
    context = ProtocolContext(tiny_splits, prior_dirs, ETFuserImageProcessor(size={"height": 64, "width": 64}), 64,
                              tmp_path, {"max_steps": 1, "per_device_train_batch_size": 8, "disable_tqdm": True})
    row = next(row for row in PROTOCOL_ROWS if row.name == "canonical")
    result = train_run(row, task, 0, context)
    assert result.predictions.shape == (8, 68, 2) and result.scores.shape == (8,)
    assert result.metrics["nme"] == pytest.approx(float(result.scores.mean()), rel=1e-5)
    assert result.validation_metrics["nme"] > 0 and result.params["params_trainable"] > 0


# ----------------------------------------------------------------------------------------------------------------------
# seeds and statistics
# ----------------------------------------------------------------------------------------------------------------------


def test_seeds_give_distinct_runs_and_a_mean_and_std(prior_dirs, tiny_splits, tmp_path):
    task = FaceTask("expression", "expression", "single_label_classification", "expression")
    context = ProtocolContext(tiny_splits, prior_dirs, ETFuserImageProcessor(size={"height": 64, "width": 64}), 64,
                              tmp_path, {"max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-2,
                                         "disable_tqdm": True}, None, {"expression": list(range(7))})
    rows = [row for row in PROTOCOL_ROWS if row.name in ("et-fuser", "canonical")]
    runs = {row.name: [train_run(row, task, seed, context) for seed in (0, 1)] for row in rows}
    first, second = runs["et-fuser"]
    assert not np.allclose(first.logits, second.logits), "two seeds gave the same model"
    table = task_table(task, runs, [0, 1], "et-fuser")
    for row in table["rows"]:
        values = [result.metrics["accuracy"] for result in runs[row["variant"]]]
        assert row["test"]["accuracy"]["mean"] == pytest.approx(np.mean(values), abs=1e-4)
        assert row["test"]["accuracy"]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-4)
    canonical = table["rows"][1]
    assert len(canonical["p_per_seed_vs_main"]) == 2 and canonical["p_seeds_ttest_vs_main"] is not None
    markdown = render_task_table(table)
    assert "| et-fuser |" in markdown and "| canonical |" in markdown and " ± " in markdown
    assert "test split" in markdown
    assert all(row["augmentation"] == "none" for row in table["rows"]) and "augmentation (training" not in markdown
    table["rows"][0]["augmentation"] = "light, 2 views"  # a row trained on its chosen views gets the column
    lines = render_task_table(table).splitlines()
    header, rule, main = (next(i for i, line in enumerate(lines) if line.startswith("| variant")) + k for k in range(3))
    assert "| augmentation (training split) |" in lines[header]
    assert lines[header].count("|") == lines[rule].count("|") == lines[main].count("|")
    assert "| light, 2 views |" in lines[main] and "| none |" in lines[main + 1]


def test_seed_ttest_mcnemar_and_permutation_test_agree_with_scipy_on_known_cases():
    a, b = [0.61, 0.58, 0.64, 0.60], [0.55, 0.57, 0.59, 0.52]
    assert seed_ttest_pvalue(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert seed_ttest_pvalue([0.5], [0.4]) is None and seed_ttest_pvalue(a, a) == 1.0
    # 10 images right only for A, 2 only for B, 20 right for both: exact McNemar = two-sided binomial(10; 12, 1/2)
    correct_a = np.array([1] * 10 + [0] * 2 + [1] * 20, bool)
    correct_b = np.array([0] * 10 + [1] * 2 + [1] * 20, bool)
    assert mcnemar_pvalue(correct_a, correct_b) == pytest.approx(0.0385742, abs=1e-6)
    assert mcnemar_pvalue(correct_a, correct_b) == pytest.approx(stats.binomtest(10, 12).pvalue)
    assert mcnemar_pvalue(correct_a, correct_a) == 1.0
    rng = np.random.default_rng(0)
    nme_a = rng.uniform(0.05, 0.10, 400)
    assert paired_permutation_pvalue(nme_a, nme_a + 0.02) < 0.001  # a clear gap
    noisy = nme_a + rng.normal(0, 0.01, 400)
    p = paired_permutation_pvalue(nme_a, noisy - (noisy - nme_a).mean())  # zero mean gap
    assert p > 0.5
    with pytest.raises(ValueError, match="same examples"):
        mcnemar_pvalue(correct_a, correct_b[:5])


def test_label_fraction_subset_is_seeded_and_shared(tiny_splits):
    train = tiny_splits["train"]
    half = subsample_train(train, 0.5, seed=3)
    assert len(half) == 8 and _image_hashes(half) == _image_hashes(subsample_train(train, 0.5, seed=3))
    assert _image_hashes(half) <= _image_hashes(train) and subsample_train(train, 1.0, 3) is train
    with pytest.raises(ValueError, match="label fraction must be in"):
        subsample_train(train, 0.0, 3)


def test_collator_pixel_fast_path_equals_the_processor():
    faces = make_synthetic_faces(3, image_size=32, seed=2)
    images = [faces[i]["image"] for i in range(3)]
    processor = ETFuserImageProcessor(size={"height": 32, "width": 32})
    assert torch.equal(pixel_values(images, processor), processor(images, return_tensors="pt")["pixel_values"])
    other = ETFuserImageProcessor(size={"height": 24, "width": 24})  # a resize: the processor's own path
    assert torch.equal(pixel_values(images, other), other(images, return_tensors="pt")["pixel_values"])
