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
    assert model.etfuser.embeddings.ensemble_tokens.grad.abs().sum() > 0
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)

    # the frozen priors still give their original outputs inside ET-Fuser: the mirrored astronaut is the same identity
    features = model.etfuser.extract_prior_features(pixel_values)
    identity = features["face_recognition"][:, 0]
    assert torch.nn.functional.cosine_similarity(identity[0], identity[1], dim=0) > 0.8

    model.save_pretrained(tmp_path)
    reloaded = ETFuserForImageClassification.from_pretrained(tmp_path, dtype=torch.float32).eval()
    torch.testing.assert_close(reloaded(pixel_values).logits, model.eval()(pixel_values).logits)


def test_main_job_end_to_end_with_multitask_and_companion_options(real_prior_dirs, tmp_path):
    """training/train.py on the real priors, shrunk to a few steps: the main table holds the companion and
    multi-task rows with p-values against ET-Fuser, and the multi-task comparison is in metrics.json and results.md."""
    import json

    from etfuser_hf.training.main import main

    output_dir = tmp_path / "run"
    main(["--num-train", "16", "--num-eval", "12", "--image-size", "64", "--max-steps", "2", "--batch-size", "8",
          "--no-baselines", "--companion", "jigsaw", "--multitask", "mask", "--output-dir", str(output_dir)])
    metrics = json.loads((output_dir / "metrics.json").read_text())
    rows = {row["variant"]: row for row in metrics["results"]}
    assert list(rows) == ["et-fuser", "aux-jigsaw", "multitask-expression+mask"]
    for name in ("aux-jigsaw", "multitask-expression+mask"):
        assert 0.0 <= rows[name]["p_value_vs_main"] <= 1.0 and 0.0 <= rows[name]["mcnemar_p_vs_main"] <= 1.0
    comparison = metrics["multitask"]
    assert [row["task"] for row in comparison["tasks"]] == ["expression", "mask"]
    # the expression branch of the multi-task model is the main table's row; et-fuser is its single-task reference
    assert comparison["tasks"][0]["multi_task"] == rows["multitask-expression+mask"]["metrics"]
    assert comparison["tasks"][0]["single_task"] == rows["et-fuser"]["metrics"]
    params = comparison["params"]
    # one set of frozen priors and one backbone instead of two
    assert params["multi_task"]["params_total"] < params["single_task_models"]["params_total"]
    assert params["multi_task"]["params_trainable"] < params["single_task_models"]["params_trainable"]
    assert "## One multi-task model against single-task models" in (output_dir / "results.md").read_text()
