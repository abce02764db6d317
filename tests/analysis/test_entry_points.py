"""`etfuser predict`, `etfuser analyze`, `analyze()` and the demo share one inference path (`FaceAnalyzer`): one suffix
list, one image opener, one model loader, recursive folders everywhere, and the same answer for the same photo whatever
the head (softmax, sigmoid or regression) and the processor's crop size (32 here, not the 112 a copy once hard-coded).
Tiny random-weight models on scikit-image's astronaut photo (public domain); the detector is the real MTCNN."""

from __future__ import annotations

import importlib
import json
import pkgutil

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from conftest import tiny_etfuser_config

import etfuser_hf.analysis
import etfuser_hf.hub
from etfuser_hf import ETFuserForImageClassification, ETFuserImageProcessor
from etfuser_hf.analysis import loading, media, pipeline, saved_model
from etfuser_hf.analysis.pipeline import analyze
from etfuser_hf.analysis.report import read_table
from etfuser_hf.hub import demo
from etfuser_hf.hub.cli import main
from etfuser_hf.priors.fetch import default_cache_dir

# the FER2013 classes: `evaluate` scores by class name, so the model must have every class of the synthetic data
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
HEADS = {
    "single_label_classification": dict(num_labels=7),
    "multi_label_classification": dict(num_labels=7),
    "regression": dict(num_labels=1),
}


def save_tiny_model(folder, problem_type: str):
    torch.manual_seed(0)
    options = HEADS[problem_type]
    labels = LABELS[: options["num_labels"]]
    config = tiny_etfuser_config(problem_type=problem_type, id2label=dict(enumerate(labels)),
                                 label2id={name: i for i, name in enumerate(labels)}, **options)
    ETFuserForImageClassification(config).save_pretrained(folder)
    ETFuserImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return {kind: save_tiny_model(tmp_path_factory.mktemp(kind), kind) for kind in HEADS}


@pytest.fixture(scope="module")
def nested(tmp_path_factory):
    """photos/a/b/astronaut.png and photos/flat.png: a face two folders down, none at the top."""
    root = tmp_path_factory.mktemp("nested") / "photos"
    (root / "a" / "b").mkdir(parents=True)
    PIL.Image.fromarray(skimage.data.astronaut()).save(root / "a" / "b" / "astronaut.png")
    PIL.Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(root / "flat.png")
    return root


def package_modules(package) -> list:
    return [importlib.import_module(f"{package.__name__}.{info.name}") for info in pkgutil.iter_modules(package.__path__)]


def test_one_definition_of_the_image_suffixes_and_one_model_loader():
    modules = package_modules(etfuser_hf.analysis) + package_modules(etfuser_hf.hub)
    suffix_sets = {(module.__name__, name): value for module in modules for name, value in vars(module).items()
                   if isinstance(value, (set, frozenset, tuple, list)) and all(isinstance(item, str) for item in value)
                   and ".jpg" in value}
    # every collection of suffixes is the one in media.py, or the media set built from it
    assert {id(value) for value in suffix_sets.values()} == {id(media.IMAGE_SUFFIXES), id(media.MEDIA_SUFFIXES)}
    assert media.IMAGE_SUFFIXES <= media.MEDIA_SUFFIXES and suffix_sets[("etfuser_hf.hub.demo", "IMAGE_SUFFIXES")]
    # the loader and the default folder are saved_model's wherever a module holds them (the CLI imports on use)
    for name in ("load_model", "default_model_dir"):
        holders = [module for module in modules if name in vars(module)]
        assert {id(vars(module)[name]) for module in holders} == {id(getattr(saved_model, name))}, name
    assert demo.load_model is loading.load_model is saved_model.load_model
    assert not [module.__name__ for module in modules if "_load" in vars(module) or "expand_images" in vars(module)]


@pytest.mark.parametrize("command", ["predict", "analyze", pytest.param("analyze-onnx", marks=pytest.mark.slow),
                                     "demo", "evaluate"])  # analyze-onnx: ~30 s, it exports the graph and MTCNN
def test_every_entry_point_loads_the_model_once(command, model_dirs, nested, tmp_path, monkeypatch):
    # a cache of our own for the ONNX exports, with the converted priors (MTCNN) of the real one
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "priors").symlink_to(default_cache_dir() / "priors")
    monkeypatch.setenv("ETFUSER_CACHE", str(tmp_path / "cache"))
    loads = []
    original = ETFuserForImageClassification.from_pretrained.__func__

    def counted(cls, *args, **kwargs):
        loads.append(args[0])
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(ETFuserForImageClassification, "from_pretrained", classmethod(counted))
    folder = str(model_dirs["single_label_classification"])
    arguments = {"predict": ["predict", folder, str(nested)],
                 "analyze": ["analyze", str(nested), "--model", folder, "--output", str(tmp_path / "t.csv"),
                             "--no-progress"],
                 "analyze-onnx": ["analyze", str(nested), "--model", folder, "--output", str(tmp_path / "t.csv"),
                                  "--no-progress", "--backend", "onnx"],
                 "demo": ["demo", str(nested / "flat.png"), "--model", folder, "--output", str(tmp_path / "d.png")],
                 "evaluate": ["evaluate", folder, "--num-eval", "4", "--task", "expression"]}[command]
    main(arguments)
    assert len(loads) == 1, loads
    if command == "analyze-onnx":  # the export (the graph and its landmark stage) was built from that one loaded model
        exported = sorted(path.name for path in (tmp_path / "cache").glob("analysis_onnx/*.onnx"))
        assert len(exported) == 2 and exported[0] == exported[1].replace(".onnx", ".landmarks.onnx"), exported


@pytest.mark.parametrize("problem_type", list(HEADS))
def test_predict_and_analyze_agree_whatever_the_head(problem_type, model_dirs, nested, capsys):
    photo = nested / "a" / "b" / "astronaut.png"
    main(["predict", str(model_dirs[problem_type]), str(photo)])
    faces = json.loads(capsys.readouterr().out)[str(photo)]
    table = analyze(photo, model=model_dirs[problem_type], progress=False)
    assert len(faces) == len(table) >= 1
    for face, (_, row) in zip(faces, table.iterrows()):
        columns = pipeline.model_output_columns(table.columns)
        assert list(face["outputs"]) == columns
        np.testing.assert_allclose([face["outputs"][name] for name in columns], row[columns].to_numpy(float),
                                   atol=1e-4)
        np.testing.assert_allclose(face["box"], row[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float),
                                   atol=0.06)
        if problem_type == "regression":  # one output, named by its id2label (the main job: the target column)
            assert face["label"] is None and face["score"] is None and columns == ["value_angry"]
        else:
            assert face["label"] == row["label"]
            prefix = "prob_" if problem_type == "single_label_classification" else "attr_prob_"
            probabilities = np.array([face["outputs"][f"{prefix}{name}"] for name in LABELS])
            if problem_type == "single_label_classification":
                np.testing.assert_allclose(probabilities.sum(), 1, atol=1e-3)
                assert face["score"] == pytest.approx(probabilities.max(), abs=1e-4)
            else:  # sigmoid per class: the labels are the classes at 0.5 or above
                assert face["label"] == "|".join(name for name, p in zip(LABELS, probabilities) if p >= 0.5)


def test_every_entry_point_searches_folders_recursively(model_dirs, nested, tmp_path, capsys):
    folder = model_dirs["single_label_classification"]
    found = sorted(str(path) for path in (nested / "a" / "b" / "astronaut.png", nested / "flat.png"))
    assert sorted(analyze(nested, model=folder, progress=False)["source"].unique()) == found
    main(["predict", str(folder), str(nested)])
    assert sorted(json.loads(capsys.readouterr().out)) == found
    written = demo.run_demo(nested, folder, tmp_path / "annotated")
    assert sorted(path.name for path in written) == ["astronaut_etfuser.png", "flat_etfuser.png"]
    main(["analyze", str(nested), "--model", str(folder), "--output", str(tmp_path / "t.csv"), "--no-progress"])
    assert sorted(read_table(tmp_path / "t.csv")["source"].unique()) == found


def test_predict_sends_videos_to_analyze(model_dirs, nested, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with pytest.raises(SystemExit) as failure:
        main(["predict", str(model_dirs["single_label_classification"]), str(video), str(nested / "flat.png")])
    captured = capsys.readouterr()
    assert failure.value.code == 1 and captured.err == f"{video}: a video; `etfuser analyze` reads videos\n"
    assert json.loads(captured.out) == {str(nested / "flat.png"): []}
