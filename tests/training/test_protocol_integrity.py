"""Protocol integrity (issue 19): a fixed, fresh test split that nothing was chosen on, the same sweep candidates for
every compared row, the gate measured and not weight-decayed, LoRA that trains what it should, a probe that reads
no test label before its one test prediction, scipy's permutation test and the Holm correction. Select with
`-k "integrity or fresh or gate or lora or holm"`."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from etfuser_hf.data.synthetic_faces import make_synthetic_faces, synthetic_face
from etfuser_hf.training.comparison.splits import SAME_TRAIN_IMAGES, TEST_FIRST_INDEX, draw_train, synthetic_splits

# Every sweep and run before the fixed test split drew from synthetic indices 0..1999 (docs/recipe.md).
EARLIER_INDICES = range(0, 2000)


def _labels(split) -> list[tuple]:
    return list(zip(split["expression"], split["age_group"], map(tuple, map(np.ravel, split["landmarks"]))))


def test_fresh_test_split_stays_put_when_train_and_validation_sizes_change():
    small, small_record = synthetic_splits({"train": 3, "validation": 2, "test": 3}, image_size=32, seed=4)
    large, large_record = synthetic_splits({"train": 7, "validation": 5, "test": 3}, image_size=32, seed=4)
    assert _labels(small["test"]) == _labels(large["test"])
    assert small_record.origin["test"] == large_record.origin["test"]
    assert small_record.generator["test_first_index"] == TEST_FIRST_INDEX
    assert "1000000..1000002" in small_record.origin["test"]
    # the test images are the generator's indices from the fixed offset, none of those any sweep used
    expected = [synthetic_face(TEST_FIRST_INDEX + i, 32, 4) for i in range(3)]
    assert [row["expression"] for row in expected] == small["test"]["expression"]
    assert TEST_FIRST_INDEX >= EARLIER_INDICES.stop
    assert small_record.train_sampling == SAME_TRAIN_IMAGES  # the default: every seed the same training images


def test_fresh_split_refuses_train_and_validation_that_would_reach_the_test_range():
    with pytest.raises(ValueError, match=r"train \+ validation .* would reach the synthetic test split.*1000000"):
        synthetic_splits({"train": TEST_FIRST_INDEX - 10, "validation": 11, "test": 2})


def test_fresh_generator_slice_far_along_is_the_same_as_its_samples():
    far = make_synthetic_faces(2, image_size=32, seed=9, first_index=5_000_000)
    assert far["age_group"] == [synthetic_face(5_000_000 + i, 32, 9)["age_group"] for i in range(2)]
    with pytest.raises(ValueError, match="first_index must be a non-negative int"):
        make_synthetic_faces(2, image_size=32, first_index=-1)


def test_integrity_resample_train_draws_each_seed_anew_from_a_fixed_pool():
    splits, record = synthetic_splits({"train": 4, "validation": 2, "test": 2}, image_size=32, seed=4, train_pool=10)
    assert len(splits["train"]) == 10 and record.sizes["train"] == 4 and record.sizes["train_pool"] == 10
    assert "--resample-train" in record.train_sampling and "2000000" in record.origin["train"]
    first, again, second = (draw_train(splits["train"], 4, seed) for seed in (0, 0, 1))
    assert len(first) == 4 and _labels(first) == _labels(again) and _labels(first) != _labels(second)
    assert set(_labels(first)) <= set(_labels(splits["train"]))
    same, _ = synthetic_splits({"train": 4, "validation": 2, "test": 2}, image_size=32, seed=4)
    assert _labels(same["validation"]) == _labels(splits["validation"])  # the pool moves no other split
    with pytest.raises(ValueError, match="train_pool: a pool to draw 4 training images from needs more than 4"):
        synthetic_splits({"train": 4, "validation": 2, "test": 2}, image_size=32, train_pool=4)


# ----------------------------------------------------------------------------------------------------------------------
# the same tuning for every compared row
# ----------------------------------------------------------------------------------------------------------------------


def test_integrity_every_compared_row_gets_the_same_number_of_sweep_candidates():
    from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
    from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS
    from etfuser_hf.training.validation_sweep import candidates_per_row, sweep_candidates

    compared = [row for row in PROTOCOL_ROWS if not row.probe]
    task = SYNTHETIC_TASKS["expression"]
    candidates = sweep_candidates(task, compared, [1e-2, 3e-2], [1, 3], priors_only_learning_rates=[1e-4, 3e-4, 1e-3, 3e-3])
    counts = candidates_per_row([{"row": candidate.row.name} for candidate in candidates])
    assert counts == {row.name: 4 for row in compared}
    with pytest.raises(ValueError, match=r"needs as many rates as the other rows have candidates \(2 rates x 2"):
        sweep_candidates(task, compared, [1e-2, 3e-2], [1, 3], priors_only_learning_rates=[1e-3])


def test_integrity_sweep_rates_per_task_and_the_sweep_command_refuses_an_uneven_grid(tmp_path, capsys):
    from etfuser_hf.training.validation_sweep import main, rates_by_task

    assert rates_by_task(["1e-3", "age_group:5e-3"], ["expression", "age_group"], "--learning-rates") == {
        "expression": [1e-3], "age_group": [1e-3, 5e-3]}
    with pytest.raises(ValueError, match="names task 'landmarks', not one of --tasks"):
        rates_by_task(["landmarks:1e-3"], ["expression"], "--learning-rates")
    with pytest.raises(SystemExit):
        main(["--tasks", "expression", "--rows", "canonical", "et-fuser-priors-only", "--learning-rates", "1e-3",
              "--new-module-speedups", "1", "3", "--output-dir", str(tmp_path / "sweep")])
    assert "--priors-only-learning-rates" in capsys.readouterr().err
    assert not (tmp_path / "sweep" / "sweep.json").exists()


def test_integrity_ablation_rows_train_with_the_et_fuser_rows_chosen_rate(monkeypatch, tmp_path):
    from etfuser_hf.training.comparison import protocol
    from etfuser_hf.training.comparison.protocol import ProtocolContext, train_run
    from etfuser_hf.training.comparison.rows import OPTIONAL_ROWS
    from etfuser_hf.training.comparison.tasks import FaceTask

    task = FaceTask("expression", "expression", "single_label_classification", "expression", 1e-3,
                    row_learning_rates={"et-fuser": 3e-3}, row_overrides={"et-fuser": {"backbone_learning_rate_scale": 1 / 3}})
    seen = {}

    def fake_build(task, *args, **overrides):
        seen["overrides"] = overrides
        return type("Model", (), {"config": None})()

    def fake_train_model(name, *args, **kwargs):
        seen["learning_rate"] = kwargs["learning_rate"]
        raise StopIteration

    monkeypatch.setattr(protocol, "build_task_model", fake_build)
    monkeypatch.setattr(protocol, "train_model", fake_train_model)
    monkeypatch.setattr(ProtocolContext, "collator", lambda self, task, model, prior_feature=None: None)
    context = ProtocolContext({"train": datasets.Dataset.from_dict({}), "validation": None, "test": None}, {}, None, 64,
                              tmp_path, {})
    with pytest.raises(StopIteration):
        train_run(OPTIONAL_ROWS["mask-isolated"], task, 0, context)
    assert seen["learning_rate"] == 3e-3 and seen["overrides"]["backbone_learning_rate_scale"] == 1 / 3
    assert seen["overrides"]["attention_mask_strategy"] == "isolated"


def test_integrity_concat_mlp_gets_the_same_deep_supervision_at_no_inference_cost():
    import torch
    from conftest import tiny_etfuser_config

    from etfuser_hf import ETFuserForImageClassification

    torch.manual_seed(0)
    supervised = ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="concat_priors", ensemble_loss_weight=1.0))
    plain = ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="concat_priors"))
    assert supervised.ensemble_head is not None and plain.ensemble_head is None
    assert supervised.ensemble_head.dense.in_features == supervised.config.hidden_size  # reads the MLP's output
    plain.load_state_dict({k: v for k, v in supervised.state_dict().items() if not k.startswith("ensemble_head.")})
    pixels, labels = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3])
    supervised.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(supervised(pixels, labels=labels).loss, plain(pixels, labels=labels).loss)
        supervised.train(), plain.train()
        losses = []
        for model in (supervised, plain):
            torch.manual_seed(2)  # the same dropout masks
            losses.append(model(pixels, labels=labels).loss)
        assert losses[0] > losses[1] + 0.1  # + the head's cross-entropy, in training only


# ----------------------------------------------------------------------------------------------------------------------
# the gate
# ----------------------------------------------------------------------------------------------------------------------


def test_gate_magnitude_is_logged_during_training_and_written_into_metrics_json(tmp_path):
    import json

    import torch
    from conftest import tiny_etfuser_config

    from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
    from etfuser_hf.data.collators import FaceCollator
    from etfuser_hf.training.comparison.tasks import FaceTask
    from etfuser_hf.training.report.run_writer import write_run_folder
    from etfuser_hf.training.report.task_tables import task_table
    from etfuser_hf.training.run.trainer import train_model

    faces = make_synthetic_faces(12, image_size=32, seed=3)
    collator = FaceCollator(ETFuserImageProcessor(size={"height": 32, "width": 32}), "expression", 7,
                            use_cached_features=False)
    results = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = ETFuserForImageClassification(tiny_etfuser_config(num_labels=7, fusion_mode="add_to_pooled"))
        assert torch.count_nonzero(model.etfuser.fusion_gate) == 0
        result, trainer = train_model("et-fuser", "", model, faces.select(range(8)), faces.select(range(8, 12)),
                                      collator, tmp_path / f"run{seed}", early_stopping_patience=None,
                                      max_steps=4, per_device_train_batch_size=4, learning_rate=5e-2,
                                      logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                                      save_steps=2, disable_tqdm=True, seed=seed)
        logged = [entry["gate_magnitude"] for entry in trainer.state.log_history if "gate_magnitude" in entry]
        assert len(logged) >= 4 and logged[-1] > 0  # it opened from 0
        expected = float(torch.tanh(model.etfuser.fusion_gate.detach()).abs().mean())
        assert result.gate_magnitude == pytest.approx(expected)
        results.append(result)
    task = FaceTask("expression", "expression", "single_label_classification", "expression")
    table = task_table(task, {"et-fuser": results}, [0, 1], "et-fuser")
    write_run_folder(tmp_path / "folder", {"protocol": {"splits": {"source": "synthetic", "seed": 0, "sizes": {}},
                                                        "seeds": [0, 1], "tasks": {"expression": table}}})
    written = json.loads((tmp_path / "folder" / "metrics.json").read_text())
    gate = written["protocol"]["tasks"]["expression"]["rows"][0]["gate_magnitude"]
    assert gate["per_seed"] == [round(result.gate_magnitude, 4) for result in results]
    assert "mean |tanh(g)|" in (tmp_path / "folder" / "results.md").read_text()


@pytest.mark.parametrize("canonical_scale", [1.0, 0.25])
def test_gate_is_not_weight_decayed(tmp_path, canonical_scale):
    from conftest import tiny_etfuser_config

    from etfuser_hf import ETFuserForImageClassification
    from etfuser_hf.training.run.trainer import ETFuserTrainer, training_arguments

    model = ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="add_to_pooled",
                                                              backbone_learning_rate_scale=canonical_scale))
    arguments = training_arguments(tmp_path, weight_decay=0.05, eval_strategy="no", save_strategy="no",
                                   load_best_model_at_end=False)
    optimizer = ETFuserTrainer(model=model, args=arguments).create_optimizer()
    decay = {id(parameter): group["weight_decay"] for group in optimizer.param_groups for parameter in group["params"]}
    assert decay[id(model.etfuser.fusion_gate)] == 0.0
    assert decay[id(model.etfuser.ensemble_to_backbone.weight)] == 0.05  # other weights still decay


# ----------------------------------------------------------------------------------------------------------------------
# LoRA
# ----------------------------------------------------------------------------------------------------------------------

# the default canonical model of each synthetic task, and the module types its adapters must sit on
CNN_CANONICAL = {"expression": "FerMiniXceptionModel", "age_group": "DlibAgeModel", "landmarks": "FaceApiLandmarkModel"}


@pytest.fixture(scope="module")
def prior_dirs():
    from etfuser_hf.priors.convert_face_priors import ensure_face_priors

    return ensure_face_priors(names=("face_recognition", "face_landmarks", "age", "expression"))


@pytest.mark.parametrize("task_name", list(CNN_CANONICAL))
def test_lora_on_the_default_cnn_canonical_model_trains_adapters_and_every_fusion_module(prior_dirs, task_name):
    import torch

    from etfuser_hf.training.comparison.recipe import build_task_model
    from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS
    from etfuser_hf.training.run.trainer import apply_lora, lora_target_modules

    task = SYNTHETIC_TASKS[task_name]
    torch.manual_seed(0)
    model = build_task_model(task, prior_dirs, list(range(7)) if task.is_classification else None, image_size=64,
                             **task.fusion)
    assert type(model.etfuser.backbone).__name__ == CNN_CANONICAL[task_name]
    targets = lora_target_modules(model)
    assert len(targets) >= 3, targets
    wrapped = apply_lora(model, rank=4)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    adapters = {name for name in trainable if "lora_" in name}
    assert adapters and all(".backbone." in name for name in adapters)
    assert not any(".priors." in name for name in trainable)
    new = [name for name, _ in model.named_parameters() if not name.startswith(("etfuser.backbone.", "etfuser.priors."))]
    assert set(new) <= trainable  # projections, tokens, fusion, gate, link, deep-supervision head, classifier
    assert any("fusion_gate" in name for name in new) or task.fusion.get("fusion_mode") == "concat_before_head"
    head = "classifier." if task.is_classification else "landmark_head."
    assert any(name.startswith("ensemble_head.") for name in new) and any(name.startswith(head) for name in new)
    pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 2]) if task.is_classification else torch.rand(2, 68, 2)
    wrapped.train()
    wrapped(pixel_values=pixels, labels=labels).loss.backward()
    grads = {name: parameter.grad for name, parameter in model.named_parameters() if parameter.requires_grad}
    moved = lambda prefix: any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if prefix in n)  # noqa: E731
    assert all(grads[name] is not None and grads[name].abs().sum() > 0 for name in adapters if "lora_B" in name)
    for part in ("etfuser.embeddings.", "etfuser.fusion.", "ensemble_head.", head):
        assert moved(part), part
    if task.fusion.get("fusion_mode") != "concat_before_head":
        assert moved("fusion_gate")


def test_lora_refuses_clearly_where_no_canonical_layer_matches():
    import torch
    from conftest import tiny_etfuser_config

    from etfuser_hf import ETFuserForImageClassification
    from etfuser_hf.models.modeling_face_priors import TFSamePadConv2d
    from etfuser_hf.training.run.trainer import apply_lora

    with pytest.raises(ValueError, match="--lora adapts the canonical model, but this model .*priors_only.* has none"):
        apply_lora(ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="priors_only")))
    model = ETFuserForImageClassification(tiny_etfuser_config(fusion_mode="add_to_pooled"))
    model.etfuser.backbone = torch.nn.Sequential(TFSamePadConv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ValueError, match="--lora: the canonical model Sequential has no layer LoRA can adapt"):
        apply_lora(model)


def test_lora_protocol_run_trains_the_canonical_row_with_adapters_too(prior_dirs, tmp_path):
    import torch
    from safetensors.torch import load_file

    from etfuser_hf import ETFuserImageProcessor
    from etfuser_hf.training.comparison.protocol import ProtocolContext, train_run
    from etfuser_hf.training.comparison.rows import PROTOCOL_ROWS
    from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS

    splits, _ = synthetic_splits({"train": 8, "validation": 4, "test": 4}, image_size=64, seed=7)
    context = ProtocolContext(splits, prior_dirs, ETFuserImageProcessor(size={"height": 64, "width": 64}), 64,
                              tmp_path, {"max_steps": 2, "per_device_train_batch_size": 4, "disable_tqdm": True},
                              None, {"expression": list(range(7))}, lora_rank=4)
    rows = {row.name: row for row in PROTOCOL_ROWS}
    saved = load_file(str(prior_dirs["expression"] / "model.safetensors"))
    for name in ("canonical", "et-fuser"):
        kept = []
        result = train_run(rows[name], SYNTHETIC_TASKS["expression"], 0, context, keep_model=kept.append)
        assert "LoRA rank 4 on the canonical model" in result.description
        assert result.params["params_trainable"] < result.params["params_total"]
        merged = kept[0].etfuser.backbone.state_dict()
        assert any(not torch.equal(merged[key], saved[key]) for key in saved if saved[key].is_floating_point())


# ----------------------------------------------------------------------------------------------------------------------
# the probe, the paired test, Holm
# ----------------------------------------------------------------------------------------------------------------------


def test_integrity_probe_reads_no_test_label_before_its_one_test_prediction(prior_dirs, monkeypatch, tmp_path):
    import datasets

    from etfuser_hf import ETFuserImageProcessor
    from etfuser_hf.training.comparison import protocol
    from etfuser_hf.training.comparison.prior_features import cache_prior_features
    from etfuser_hf.training.comparison.protocol import ProtocolContext, best_prior_probe
    from etfuser_hf.training.comparison.tasks import FaceTask

    names = ("face_recognition", "age", "expression")  # expression is the canonical model: two priors to probe
    dirs = {name: prior_dirs[name] for name in names}
    processor = ETFuserImageProcessor(size={"height": 64, "width": 64})
    splits, _ = synthetic_splits({"train": 16, "validation": 8, "test": 4}, image_size=64, seed=3)
    splits, _ = cache_prior_features(splits, dirs, processor, tmp_path / "cache", 64)
    labels = splits["train"].features["expression"].names
    planted = splits["test"].cast_column("expression", datasets.Value("int64")).map(lambda row: {"expression": 99})
    splits = datasets.DatasetDict({**splits, "test": planted})
    test_reads, fits = [], []
    real_features, real_fit = protocol.pooled_prior_features, protocol.fit_probe
    monkeypatch.setattr(protocol, "pooled_prior_features", lambda rows, prior: (
        test_reads.append(prior) if rows is planted else None) or real_features(rows, prior))
    monkeypatch.setattr(protocol, "fit_probe", lambda *args, **kwargs: (
        fits.append(kwargs["test_labels"]) or real_fit(*args, **kwargs)))
    context = ProtocolContext(splits, dirs, processor, 64, tmp_path, {}, None, {"expression": labels})
    task = FaceTask("expression", "expression", "single_label_classification", "expression")
    result = best_prior_probe(task, 0, context, splits["train"])
    assert result.logits.shape == (4, 7)  # sized from the task's 7 labels, not from test's planted 99
    assert result.metrics["accuracy"] == 0.0 and result.split == "test"
    chosen = result.description.split("(")[1].split(",")[0]
    assert test_reads == [[chosen]]  # one test prediction, of the prior chosen on validation
    assert len(fits) == 3 and [labels is not None for labels in fits] == [False, False, True]


def test_integrity_regression_paired_test_is_scipys_permutation_test():
    import itertools

    from scipy import stats

    from etfuser_hf.training.report.statistics import paired_permutation_pvalue

    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.05, 0.1, 10), rng.uniform(0.05, 0.1, 10) + 0.01
    # at most 5000 resamples of 2^10 sign flips: exact, so it equals the hand-enumerated sign-flip test
    differences, observed = a - b, abs(np.mean(a - b))
    flips = np.array(list(itertools.product([1, -1], repeat=10)))
    exact = np.mean(np.abs((flips * differences).mean(axis=1)) >= observed - 1e-12)
    assert paired_permutation_pvalue(a, b) == pytest.approx(exact)
    nme_a = rng.uniform(0.05, 0.10, 300)
    nme_b = nme_a + rng.normal(0.002, 0.01, 300)
    direct = stats.permutation_test((nme_a, nme_b), lambda x, y, axis: np.mean(x - y, axis=axis),
                                    permutation_type="samples", vectorized=True, n_resamples=5000,
                                    rng=np.random.default_rng(3)).pvalue
    assert paired_permutation_pvalue(nme_a, nme_b, seed=3) == pytest.approx(direct)
    assert paired_permutation_pvalue(nme_a, nme_a) == 1.0
    with pytest.raises(ValueError, match="same examples"):
        paired_permutation_pvalue(nme_a, nme_b[:5])


def test_holm_correction_of_a_tasks_rows_known_values_and_table_column():
    from etfuser_hf.training.comparison.tasks import FaceTask
    from etfuser_hf.training.report.statistics import holm_adjusted
    from etfuser_hf.training.report.task_tables import render_task_table, task_table
    from etfuser_hf.training.run.trainer import RunResult

    # p = 0.01, 0.04, 0.03 (m = 3): 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; max(0.06, 1 x 0.04) = 0.06
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([0.5, None, 0.9]) == [1.0, None, 1.0]  # no test: outside the family (m = 2)
    rng = np.random.default_rng(0)

    def run(accuracy: float) -> RunResult:
        scores = (rng.random(40) < accuracy).astype(np.float64)
        return RunResult("r", "r", np.zeros(40, int), np.zeros((40, 7)), {"accuracy": accuracy, "macro_f1": 0.1},
                         validation_metrics={"accuracy": accuracy}, scores=scores, split="test", learning_rate=1e-3)

    task = FaceTask("expression", "expression", "single_label_classification", "expression",
                    candidates_per_row={"et-fuser": 4, "canonical": 4, "concat-mlp": 4})
    runs = {"et-fuser": [run(0.6), run(0.62), run(0.61)], "canonical": [run(0.5), run(0.55), run(0.52)],
            "concat-mlp": [run(0.59), run(0.6), run(0.62)]}
    table = task_table(task, runs, [0, 1, 2], "et-fuser")
    others = [row for row in table["rows"] if row["variant"] != "et-fuser"]
    raw = [row["p_seeds_ttest_vs_main"] for row in others]
    assert [row["p_seeds_ttest_vs_main_holm"] for row in others] == pytest.approx(
        [round(p, 4) for p in holm_adjusted(raw)], abs=1e-4)
    assert min(raw) * 2 == pytest.approx(min(row["p_seeds_ttest_vs_main_holm"] for row in others), abs=1e-4)
    markdown = render_task_table(table)
    assert "Holm-adjusted p (over 2 rows)" in markdown and "Holm-corrected across the 2 rows" in markdown
    assert "et-fuser 4, canonical 4, concat-mlp 4" in markdown and "| 4 |" in markdown


def test_lora_adapts_the_age_nets_residual_convs(prior_dirs):
    """The dlib age net's stride-1 3x3 "same" convs are plain convs (modeling_face_priors.same_conv2d), so LoRA
    reaches its residual blocks, not only its stem and strided convs."""
    from etfuser_hf.training.comparison.recipe import build_task_model
    from etfuser_hf.training.comparison.tasks import SYNTHETIC_TASKS
    from etfuser_hf.training.run.trainer import lora_target_modules

    model = build_task_model(SYNTHETIC_TASKS["age_group"], prior_dirs, list(range(4)), image_size=64)
    targets = lora_target_modules(model)
    residual = [name for name in targets if name.endswith((".conv1", ".conv2")) and ".blocks." in name]
    assert len(targets) >= 10 and len(residual) >= 7, targets
