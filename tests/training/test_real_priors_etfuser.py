"""ET-Fuser assembled from the real, converted face priors (face-api recognition + 68 landmarks, dlib age,
FER2013 expression) runs forward and backward on real face crops found by the MTCNN detector."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from conftest import tiny_vit_config

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.face_detection import detect_and_align

PRIORS = ("face_recognition", "face_landmarks", "age", "expression")


@pytest.fixture(scope="module")
def real_prior_dirs():
    return ensure_face_priors(names=PRIORS + ("mtcnn",))


@pytest.fixture(scope="module")
def face_crops():
    """The astronaut (public domain) and its mirror image, as aligned 112x112 crops."""
    detections = detect_and_align(skimage.data.astronaut(), output_size=112)
    assert detections[0].found
    return np.concatenate([detections[0].faces[:1], np.flip(detections[0].faces[:1], axis=2)])


def test_etfuser_from_real_priors_trains_on_real_faces(real_prior_dirs, face_crops, tmp_path):
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={name: real_prior_dirs[name] for name in PRIORS},
        backbone=tiny_vit_config(image_size=112, patch_size=16),
        image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7,
        attention_mask_strategy="ensemble_reads_priors",
    )
    # the priors' own input contracts came from their converted configs
    assert model.config.priors["face_recognition"].image_size == [150, 150]
    assert model.config.priors["expression"].color_mode == "grayscale"
    assert model.config.priors["age"].pixel_scale == 255.0

    processor = ETFuserImageProcessor(size={"height": 112, "width": 112})
    pixel_values = processor(list(face_crops), return_tensors="pt")["pixel_values"]
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("etfuser.priors.")}
    outputs = model(pixel_values, labels=torch.tensor([3, 3]), output_attentions=True)
    outputs.loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    assert torch.isfinite(outputs.loss)
    assert outputs.prior_attention.shape == (2, 4)
    # the zero-initialised gate keeps the canonical model as it was at step 0, and is what learns first
    assert model.etfuser.fusion_gate.grad.abs().sum() > 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)
    model.zero_grad()
    model(pixel_values, labels=torch.tensor([3, 3])).loss.backward()  # the gate is open now: the token learns
    assert model.etfuser.embeddings.ensemble_tokens.grad.abs().sum() > 0

    # the frozen priors still give their original outputs inside ET-Fuser: the mirrored astronaut is the same identity
    features = model.etfuser.extract_prior_features(pixel_values)
    identity = features["face_recognition"][:, 0]
    assert torch.nn.functional.cosine_similarity(identity[0], identity[1], dim=0) > 0.8

    model.save_pretrained(tmp_path)
    reloaded = ETFuserForImageClassification.from_pretrained(tmp_path, dtype=torch.float32).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, model.eval()(pixel_values).logits)


def test_main_job_end_to_end_on_the_protocol_with_seeds_fractions_and_multitask(real_prior_dirs, tmp_path):
    """training/train.py on the real priors, shrunk to a few steps: one table per task on the test split with every
    protocol row over two seeds, the splits recorded, label efficiency, the multi-task comparison and a model card
    with the tables."""
    import json

    from etfuser_hf.hub.model_card import build_model_card
    from etfuser_hf.training.main import main

    output_dir = tmp_path / "run"
    main(["--tasks", "expression", "landmarks", "--num-train", "16", "--num-validation", "8", "--num-test", "8",
          "--image-size", "64", "--max-steps", "2", "--batch-size", "8", "--seeds", "2", "--label-fractions", "0.5",
          "1.0", "--companion", "jigsaw", "--multitask", "mask", "--output-dir", str(output_dir)])
    metrics = json.loads((output_dir / "metrics.json").read_text())
    protocol = metrics["protocol"]
    assert protocol["seeds"] == [0, 1] and protocol["splits"]["sizes"] == {"train": 16, "validation": 8, "test": 8}
    assert json.loads((output_dir / "splits.json").read_text()) == protocol["splits"]
    expression, landmarks = protocol["tasks"]["expression"], protocol["tasks"]["landmarks"]
    # expression's et-fuser and concat-mlp read pooled priors (their spatial rows beside them); landmarks' et-fuser
    # each prior's own grid, concat-mlp pooled priors
    assert [row["variant"] for row in expression["rows"]] == [
        "et-fuser", "canonical", "concat-mlp", "concat-mlp-grid", "et-fuser-spatial", "et-fuser-priors-only",
        "probe-best-prior", "aux-jigsaw"]
    assert [row["variant"] for row in landmarks["rows"]] == [
        "et-fuser", "canonical", "concat-mlp", "concat-mlp-grid", "et-fuser-pooled", "et-fuser-priors-only",
        "probe-best-prior"]
    assert [(pair["token_row"], pair["concatenation_row"]) for pair in expression["same_tokens"]] == [
        ("et-fuser", "concat-mlp"), ("et-fuser-spatial", "concat-mlp-grid")]
    assert [(pair["token_row"], pair["concatenation_row"]) for pair in landmarks["same_tokens"]] == [
        ("et-fuser", "concat-mlp-grid"), ("et-fuser-pooled", "concat-mlp")]
    assert expression["split"] == landmarks["split"] == "test" and landmarks["metric"] == "nme"
    for row in expression["rows"][1:] + landmarks["rows"][1:]:
        assert len(row["test"]["per_seed"]) == 2 and len(row["p_per_seed_vs_main"]) == 2
        assert row["p_seeds_ttest_vs_main"] is None or 0.0 <= row["p_seeds_ttest_vs_main"] <= 1.0
        assert row["params_total"] >= row["params_trainable"] > 0
    canonical = next(row for row in expression["rows"] if row["variant"] == "canonical")
    fused = expression["rows"][0]
    assert canonical["params_trainable"] < fused["params_trainable"]  # ET-Fuser adds its fusion module
    efficiency = metrics["label_efficiency"]["expression"]["rows"]
    assert set(efficiency) == {"canonical", "concat-mlp", "concat-mlp-grid", "et-fuser", "et-fuser-spatial"}
    assert set(efficiency["et-fuser"]) == {"0.5", "1.0"}
    compared = {(entry["row"], entry["against"]) for entry in metrics["label_efficiency"]["expression"]["comparisons"]}
    assert ("et-fuser-spatial", "concat-mlp-grid") in compared and ("et-fuser", "concat-mlp") in compared
    assert ("et-fuser", "canonical") in compared
    assert efficiency["et-fuser"]["1.0"]["per_seed"] == fused["test"]["per_seed"]  # fraction 1.0 is the protocol run
    assert "plots/label_efficiency.png" in metrics["plots"]
    comparison = metrics["multitask"]
    assert [row["task"] for row in comparison["tasks"]] == ["expression", "mask"] and comparison["split"] == "test"
    assert comparison["tasks"][0]["single_task"]["accuracy"] == round(fused["test"]["per_seed"][0], 4)
    assert comparison["params"]["multi_task"]["params_total"] < comparison["params"]["single_task_models"]["params_total"]
    results = (output_dir / "results.md").read_text()
    assert results.startswith("> **SYNTHETIC data.**") and "### landmarks: test-split NME" in results
    card = build_model_card(output_dir).text
    assert card.count("| et-fuser |") >= 2 and "test split" in card and "| canonical |" in card and " ± " in card


def test_main_job_whose_first_task_reads_grid_tokens_measures_attention_over_its_grids(real_prior_dirs, tmp_path):
    """When the first task's et-fuser reads grid tokens (age group), the run folder's attention is measured on the
    grid view of the cached priors that model was trained on (the pooled view would not fit its prior tokens)."""
    import json

    from etfuser_hf.training.main import main

    output_dir = tmp_path / "run"
    main(["--tasks", "age_group", "--no-baselines", "--num-train", "8", "--num-validation", "4", "--num-test", "4",
          "--image-size", "64", "--max-steps", "1", "--batch-size", "4", "--seeds", "1", "--output-dir",
          str(output_dir)])
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["protocol"]["tasks"]["age_group"]["rows"][0]["variant"] == "et-fuser"
    attention = metrics["prior_attention"]
    assert set(attention) == {"expression", "face_landmarks", "face_recognition"}  # the age net is canonical
    assert abs(sum(attention.values()) - 1.0) < 1e-3
