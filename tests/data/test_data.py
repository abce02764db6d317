"""Dataset loaders, each on a tiny fixture written in the exact original on-disk format, and their errors."""

from __future__ import annotations

import json

import datasets
import numpy as np
import PIL.Image
import pytest

from etfuser_hf.data.face_datasets import (
    FaceDatasetError,
    celeba_attribute_names,
    detect_format,
    load_face_dataset,
    read_face_source,
    with_face_transform,
)


def write_image(path, seed=0, size=(24, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def fer_row(emotion, usage, value=10):
    return f'{emotion},"{" ".join([str(value)] * 2304)}",{usage}\n'


@pytest.fixture
def fer_csv(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + fer_row(3, "Training") + fer_row(0, "Training", 200)
                    + fer_row(6, "PublicTest") + fer_row(5, "PrivateTest"))
    return path


def test_fer2013(fer_csv):
    data = load_face_dataset(fer_csv)
    assert detect_format(fer_csv) == "fer2013"
    assert {split: len(d) for split, d in data.items()} == {"train": 2, "validation": 1, "test": 1}
    assert data["train"].features["label"].names[3] == "happy" and data["train"][0]["label"] == 3
    assert data["train"][1]["image"].size == (48, 48) and np.asarray(data["train"][1]["image"]).max() == 200


def test_rafdb(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\ntrain_00002.jpg 7\ntest_0001.jpg 1\n")
    for name in ("train_00001", "train_00002", "test_0001"):
        write_image(tmp_path / "Image" / "aligned" / f"{name}_aligned.jpg")
    data = load_face_dataset(tmp_path)
    assert detect_format(tmp_path) == "rafdb"
    assert len(data["train"]) == 2 and len(data["test"]) == 1
    names = data["train"].features["label"].names
    assert names[data["train"][0]["label"]] == "happiness" and names[data["train"][1]["label"]] == "neutral"


def test_utkface(tmp_path):
    write_image(tmp_path / "26_1_2_20170116174525125.jpg.chip.jpg")
    write_image(tmp_path / "3_0_0_20170110213121589.jpg")
    data = load_face_dataset(tmp_path)
    assert detect_format(tmp_path) == "utkface"
    assert sorted(data["age"]) == [3, 26]
    row = data[[i for i in range(2) if data[i]["age"] == 26][0]]
    assert data.features["gender"].names[row["gender"]] == "female" and data.features["race"].names[row["race"]] == "asian"


def test_celeba(tmp_path):
    (tmp_path / "list_attr_celeba.txt").write_text(
        "3\n5_o_Clock_Shadow Arched_Eyebrows Smiling\n000001.jpg -1  1  1\n000002.jpg  1 -1 -1\n000003.jpg -1 -1  1\n")
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 2\n")
    for index in range(1, 4):
        write_image(tmp_path / "img_align_celeba" / f"00000{index}.jpg")
    data = load_face_dataset(tmp_path)
    assert detect_format(tmp_path) == "celeba"
    assert data["train"][0]["attributes"] == [0.0, 1.0, 1.0] and len(data["test"]) == 1
    assert celeba_attribute_names(tmp_path) == ["5_o_Clock_Shadow", "Arched_Eyebrows", "Smiling"]


def test_affectnet(tmp_path):
    write_image(tmp_path / "images" / "689" / "a.jpg")
    write_image(tmp_path / "images" / "690" / "b.jpg")
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    (tmp_path / "training.csv").write_text(
        header + '689/a.jpg,10,10,100,100,"1.0;2.0;3.0;4.0",1,0.8,0.3\n690/b.jpg,5,5,50,50,"1;2",9,-2,-2\n')
    data = load_face_dataset(tmp_path / "training.csv", images_dir=tmp_path / "images")
    assert detect_format(tmp_path / "training.csv") == "affectnet"
    assert len(data) == 1  # expression 9 (uncertain) dropped
    assert data.features["label"].names[data[0]["label"]] == "happy"
    assert data[0]["landmarks"] == [[1.0, 2.0], [3.0, 4.0]] and data[0]["valence"] == pytest.approx(0.8)


def test_manifests_csv_and_json(tmp_path):
    write_image(tmp_path / "faces" / "x.png")
    write_image(tmp_path / "faces" / "y.png", seed=1)
    (tmp_path / "train.csv").write_text("image,expression,age\nfaces/x.png,happy,31\nfaces/y.png,sad,40\n")
    data = load_face_dataset(tmp_path / "train.csv", label_names={"expression": ["happy", "sad"]})
    assert data.features["expression"].names == ["happy", "sad"] and data["expression"] == [0, 1]
    (tmp_path / "train.json").write_text(json.dumps([{"image": "faces/x.png", "mask": 1}]))
    assert load_face_dataset(tmp_path / "train.json")[0]["mask"] == 1


def test_imagefolder(tmp_path):
    write_image(tmp_path / "happy" / "a.png")
    write_image(tmp_path / "sad" / "b.png")
    data = load_face_dataset(tmp_path)
    assert detect_format(tmp_path) == "imagefolder"
    assert sorted(data["train"].features["label"].names) == ["happy", "sad"]


def test_missing_image_names_the_row(tmp_path):
    write_image(tmp_path / "faces" / "x.png")
    (tmp_path / "m.csv").write_text("image,label\nfaces/x.png,0\nfaces/gone.png,1\n")
    with pytest.raises(FaceDatasetError, match=r"m.csv row 3: image file .*gone.png does not exist"):
        load_face_dataset(tmp_path / "m.csv")


def test_corrupt_image_is_left_to_the_decode_stage(tmp_path):
    # readers only check that an image exists; decoding (and reporting an undecodable file) is the next stage's job
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "bad.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "m.csv").write_text("image,label\nfaces/bad.jpg,0\n")
    data = load_face_dataset(tmp_path / "m.csv")
    assert data.cast_column("image", datasets.Image(decode=False))[0]["image"]["path"].endswith("bad.jpg")
    with pytest.raises(PIL.UnidentifiedImageError):
        data[0]["image"]


def test_label_outside_the_label_set_is_skipped_or_refused(tmp_path, fer_csv, caplog):
    fer_csv.write_text(fer_csv.read_text() + fer_row(9, "Training"))
    data, report = read_face_source(fer_csv)
    assert len(data["train"]) == 2 and report.skipped == {"label_out_of_range": 1}
    assert "row 6: label 9 is outside the label set 0..6" in caplog.text
    with pytest.raises(FaceDatasetError, match=r"row 6: label 9 is outside the label set 0..6"):
        load_face_dataset(fer_csv, strict=True)


def test_malformed_rows(tmp_path):
    path = tmp_path / "fer.csv"
    path.write_text('emotion,pixels,Usage\n3,"1 2 3",Training\n')
    with pytest.raises(FaceDatasetError, match=r"row 2: 'pixels' must hold 2304 values"):
        load_face_dataset(path)
    (tmp_path / "UTK").mkdir()
    write_image(tmp_path / "UTK" / "26_1_2_20170116174525125.jpg")
    write_image(tmp_path / "UTK" / "oops.jpg")
    assert len(load_face_dataset(tmp_path / "UTK", format="utkface")) == 1  # skipped, as UTKFace users do
    with pytest.raises(FaceDatasetError, match="oops.jpg: file name is not"):
        load_face_dataset(tmp_path / "UTK", format="utkface", strict=True)


def test_empty_datasets(tmp_path):
    (tmp_path / "empty.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(FaceDatasetError, match="no examples found"):
        load_face_dataset(tmp_path / "empty.csv")
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("")
    with pytest.raises(FaceDatasetError, match="no examples found"):
        load_face_dataset(tmp_path)
    with pytest.raises(ValueError, match="format must be one of"):
        load_face_dataset(tmp_path, format="lfw")


def test_malformed_csv_rows_and_missing_layout_files(tmp_path):
    write_image(tmp_path / "faces" / "x.png")
    (tmp_path / "m.csv").write_text("image,label\nfaces/x.png,0\nfaces/x.png\n")
    with pytest.raises(FaceDatasetError, match=r"m.csv row 3: malformed row, expected 2 fields"):
        load_face_dataset(tmp_path / "m.csv")
    (tmp_path / "fer.csv").write_text('emotion,pixels,Usage\n3,"' + " ".join(["x"] * 2304) + '",Training\n')
    with pytest.raises(FaceDatasetError, match=r"fer.csv row 2: 'pixels' holds a value that is not a number"):
        load_face_dataset(tmp_path / "fer.csv")
    (tmp_path / "bad.json").write_text(json.dumps([{"image": "faces/x.png"}, ["faces/x.png"]]))
    with pytest.raises(FaceDatasetError, match="list of records"):
        load_face_dataset(tmp_path / "bad.json")
    with pytest.raises(FaceDatasetError, match=r"list_patition_label.txt: missing; the RAF-DB layout"):
        load_face_dataset(tmp_path / "nowhere", format="rafdb")
    with pytest.raises(FaceDatasetError, match="no such file or folder"):
        load_face_dataset(str(tmp_path / "nowhere"))


def test_with_face_transform_gives_lazy_model_inputs(tmp_path, fer_csv):
    from transformers import default_data_collator

    from etfuser_hf import ETFuserImageProcessor

    train = load_face_dataset(fer_csv)["train"]
    view = with_face_transform(train, ETFuserImageProcessor(size={"height": 32, "width": 32}), label_column="label")
    assert train.format["type"] is None  # the source dataset is untouched
    batch = default_data_collator([view[0], view[1]])
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["labels"].tolist() == [3, 0]
    assert batch["labels"].dtype.is_floating_point is False
    assert batch["pixel_values"][0].max().item() == pytest.approx(10 / 255, abs=1e-3)  # grey 10 -> RGB in [0, 1]
    (tmp_path / "CelebA" / "list_attr_celeba.txt").parent.mkdir()
    (tmp_path / "CelebA" / "list_attr_celeba.txt").write_text("1\nSmiling Young\n000001.jpg 1 -1\n")
    write_image(tmp_path / "CelebA" / "img_align_celeba" / "000001.jpg")
    attributes = with_face_transform(load_face_dataset(tmp_path / "CelebA"), label_column="attributes")
    assert attributes[0]["labels"].tolist() == [1.0, 0.0] and attributes[0]["pixel_values"].shape == (3, 224, 224)
    with pytest.raises(ValueError, match=r"label_column: 'emotion' is not a column"):
        with_face_transform(train, label_column="emotion")
