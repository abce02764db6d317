"""Every distributed layout read as its owners ship it (fixtures in `layouts.py`, real face photos), with its own
splits, label sets, column specs and skip counts; and each layout's typical damage, skipped or refused with a
message naming the file and row."""

from __future__ import annotations

import shutil

import datasets
import pytest
from layouts import (
    CELEBA_ATTRIBUTES,
    EXPECTED_SIZES,
    UTKFACE_BAD_NAMES,
    affectnet_row,
    expected_celeba_attributes,
    expected_celeba_points,
    fer2013_row,
    save_face,
    write_affectnet,
    write_celeba,
    write_fer2013_csv,
    write_fer2013_folders,
    write_rafdb,
    write_utkface,
    write_utkface_wild,
)

from etfuser_hf.data.face_datasets import (
    AFFECTNET_LABELS,
    FER2013_LABELS,
    RAFDB_LABELS,
    FaceDatasetError,
    celeba_attribute_names,
    detect_format,
    load_face_dataset,
    read_face_source,
    source_report,
)
from etfuser_hf.data.label_aliases import canonical_expression, map_label_names
from etfuser_hf.data.validation_split import carve_validation


def sizes(data):
    return {split: len(part) for split, part in data.items()} if isinstance(data, datasets.DatasetDict) else len(data)


def label_names(data, column="label"):
    return (data["train"] if isinstance(data, datasets.DatasetDict) else data).features[column].names


# ----------------------------------------------------------------------------------------------------------------------
# each layout as distributed
# ----------------------------------------------------------------------------------------------------------------------


def test_rafdb_layout(tmp_path):
    basic = write_rafdb(tmp_path)
    for source in (basic, basic.parent):  # basic/ itself or the RAF-DB folder holding it
        data, report = read_face_source(source)
        assert detect_format(source) == "rafdb" and sizes(data) == EXPECTED_SIZES["rafdb"]
    assert label_names(data) == RAFDB_LABELS and report.skipped == {} and report.excluded == {}
    first = data["train"].cast_column("image", datasets.Image(decode=False))[0]
    assert first["image"]["path"].endswith("Image/aligned/train_00001_aligned.jpg")
    assert RAFDB_LABELS[first["label"]] == "happiness"  # file label 4
    assert report.columns["label"].problem_type == "single_label_classification"
    assert report.files == [str(basic / "EmoLabel" / "list_patition_label.txt")]
    assert data["test"][0]["image"].size == (100, 100)  # decoded only when asked for


def test_fer2013_csv_layout(tmp_path):
    path = write_fer2013_csv(tmp_path)
    for source in (path, path.parent):
        data, report = read_face_source(source)
        assert detect_format(source) == "fer2013" and sizes(data) == EXPECTED_SIZES["fer2013_csv"]
    assert label_names(data) == FER2013_LABELS and report.skipped == {}
    assert data["test"][0]["image"].size == (48, 48) and data["test"][0]["image"].mode == "L"
    assert report.split_origin["test"] == "fer2013.csv rows with Usage PrivateTest"


def test_fer2013_icml_csv_dataset_with_spaced_header(tmp_path):
    # the challenge's icml_face_data.csv: columns "emotion, Usage, pixels", with leading spaces in the header
    pixels = fer2013_row(2, "Training", 1).split('"')[1]
    path = tmp_path / "icml_face_data.csv"
    path.write_text(f"emotion, Usage, pixels\n2,PrivateTest,{pixels}\n5,Training,{pixels}\n")
    data, report = read_face_source(path)
    assert detect_format(path) == "fer2013" and sizes(data) == {"train": 1, "test": 1} and report.skipped == {}
    assert data["test"][0]["label"] == 2 and report.splits == {"train": 1, "validation": 0, "test": 1}


def test_fer2013_folders_layout(tmp_path):
    root = write_fer2013_folders(tmp_path)
    data, report = read_face_source(root)
    assert detect_format(root) == "fer2013" and sizes(data) == EXPECTED_SIZES["fer2013_folders"]
    assert label_names(data) == FER2013_LABELS  # the CSV's order, not the folders' alphabetical one
    paths = data["train"].cast_column("image", datasets.Image(decode=False))
    neutral = [row["label"] for row in paths if "/neutral/" in row["image"]["path"]]
    assert neutral == [FER2013_LABELS.index("neutral")] and report.skipped == {}
    carved, record = carve_validation(data, fraction=2 / 7, seed=3, stratify_column=None)  # one image per class
    assert sizes(carved) == {"train": 5, "test": 7, "validation": 2}
    assert carve_validation(data, fraction=2 / 7, seed=3, stratify_column=None)[0]["validation"]["label"] == \
        carved["validation"]["label"]  # seeded
    assert record.to_dict() == {"seed": 3, "fraction": 2 / 7, "stratify_column": None,
                                "counts": {"train": 5, "validation": 2}}


def test_utkface_layout_skips_the_three_unparseable_names(tmp_path, caplog):
    root = write_utkface(tmp_path)
    for source in (root, root.parent):  # UTKFace/ or the folder holding it
        data, report = read_face_source(source)
        assert detect_format(source) == "utkface" and sizes(data) == EXPECTED_SIZES["utkface"]
    assert report.skipped == {"unparseable_name": 3}
    for name in UTKFACE_BAD_NAMES:
        assert f"{name}: file name is not [age]_[gender]_[race]_[date&time].jpg" in caplog.text
    assert sorted(data["age"]) == [1, 26, 35, 54, 80] and label_names(data, "race")[4] == "others"
    assert report.columns["age"].problem_type == "regression" and report.columns["age"].units == "years"
    assert report.splits == {"all": 5}


def test_utkface_in_the_wild_parts_layout(tmp_path):
    root = write_utkface_wild(tmp_path)
    data, report = read_face_source(root)
    assert detect_format(root) == "utkface" and sizes(data) == EXPECTED_SIZES["utkface_wild"]
    assert sorted(set(data["age"])) == [21, 22, 23] and report.skipped == {}
    assert "part1/, part2/, part3/" in report.split_origin["all"]


def test_affectnet_distributed_layout(tmp_path):
    root = write_affectnet(tmp_path)
    data, report = read_face_source(root)
    assert detect_format(root) == "affectnet" and sizes(data) == EXPECTED_SIZES["affectnet"]
    assert label_names(data) == AFFECTNET_LABELS and report.skipped == {}
    assert report.excluded == {"non_face_or_uncertain (8..10)": 3}
    assert "validation.csv (the official validation set)" in report.split_origin["test"]
    row = data["test"][1]
    assert row["label"] == 1 and row["valence"] == pytest.approx(0.5) and row["arousal"] == pytest.approx(-0.25)
    assert row["face_box"] == [12, 14, 60, 64] and len(row["landmarks"]) == 68 and row["landmarks"][0] == [10.0, 20.5]
    assert row["image"].size == (96, 96)
    assert report.columns["landmarks"].num_points == 68 and report.columns["face_box"].problem_type == "box"
    assert report.columns["valence"].problem_type == "regression"


def test_affectnet_seven_classes_file_lists_and_one_csv_dataset(tmp_path):
    root = write_affectnet(tmp_path)
    lists = root / "Manually_Annotated_file_lists"
    data, report = read_face_source(lists, classes=7)  # the file-list folder finds the images beside it
    assert sizes(data) == EXPECTED_SIZES["affectnet_7"] and label_names(data) == AFFECTNET_LABELS[:7]
    assert report.excluded == {"non_face_or_uncertain (8..10)": 3, "contempt (7 classes)": 2}
    one = load_face_dataset(lists / "validation.csv")
    assert isinstance(one, datasets.Dataset) and len(one) == 8
    kept = load_face_dataset(root, keep_non_faces=True)
    assert label_names(kept)[8:] == ["none", "uncertain", "non-face"] and sizes(kept)["train"] == 11
    with pytest.raises(ValueError, match="keep_non_faces needs classes=8"):
        load_face_dataset(root, classes=7, keep_non_faces=True)


@pytest.mark.parametrize("layout", ["official", "kaggle", "torchvision"])
def test_celeba_layouts(tmp_path, layout):
    root = write_celeba(tmp_path, layout)
    data, report = read_face_source(root)
    assert detect_format(root) == "celeba" and sizes(data) == EXPECTED_SIZES["celeba"] and report.skipped == {}
    assert data["train"][0]["attributes"] == expected_celeba_attributes(0)
    assert data["test"][1]["landmarks"] == expected_celeba_points(5)
    assert report.columns["attributes"].names == tuple(CELEBA_ATTRIBUTES)
    assert report.columns["attributes"].problem_type == "multi_label_classification"
    assert report.columns["landmarks"].num_points == 5 and celeba_attribute_names(root) == CELEBA_ATTRIBUTES
    assert data["validation"][0]["image"].size == (178, 218)
    assert report.split_origin["validation"].endswith(f"{layout} layout")


def test_source_report_travels_with_the_dataset(tmp_path):
    data, report = read_face_source(write_utkface(tmp_path))
    assert source_report(data) == report
    assert source_report(data.map(lambda row: row)) == report  # survives a map
    assert source_report(datasets.Dataset.from_dict({"x": [1]})) is None


def test_unrecognised_layout_lists_the_dataset_layouts(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(FaceDatasetError, match=r"(?s)notes: not a dataset layout we read.*RAF-DB basic.*AffectNet"):
        load_face_dataset(tmp_path / "notes")


# ----------------------------------------------------------------------------------------------------------------------
# typical damage: skipped (named, counted) or refused (named)
# ----------------------------------------------------------------------------------------------------------------------


def append(path, text):
    path.write_text(path.read_text() + text)


def test_rafdb_layout_damage(tmp_path, caplog):
    basic = write_rafdb(tmp_path)
    labels = basic / "EmoLabel" / "list_patition_label.txt"
    append(labels, "train_00007.jpg\ntrain_00008.jpg 9\ntrain_00009.jpg 3\n")  # lines 10, 11, 12
    data, report = read_face_source(basic)
    assert sizes(data) == EXPECTED_SIZES["rafdb"]
    assert report.skipped == {"malformed_row": 1, "label_out_of_range": 1, "missing_image": 1}
    assert f"{labels} line 10: expected '<train|test>_NNNNN.jpg <label 1..7>'" in caplog.text
    assert f"{labels} line 11: label 9 is outside the label set 1..7" in caplog.text
    assert f"{labels} line 12: image file {basic}/Image/aligned/train_00009_aligned.jpg does not exist" in caplog.text
    with pytest.raises(FaceDatasetError, match=r"list_patition_label.txt line 10: expected"):
        load_face_dataset(basic, strict=True)
    shutil.rmtree(basic / "Image")
    with pytest.raises(FaceDatasetError, match=r"Image/original: image folder missing; the RAF-DB layout"):
        load_face_dataset(basic)
    labels.unlink()
    with pytest.raises(FaceDatasetError, match=r"list_patition_label.txt: missing; the RAF-DB layout needs this file"):
        load_face_dataset(basic, format="rafdb")


def test_fer2013_layout_damage(tmp_path, caplog):
    path = write_fer2013_csv(tmp_path)
    append(path, '3,"1 2 3"\n' + fer2013_row(7, "Training", 0) + fer2013_row(1, "Validation", 0)
           + '1,"x 2 3",Training\n')  # rows 10..13
    data, report = read_face_source(path)
    assert sizes(data) == EXPECTED_SIZES["fer2013_csv"]
    assert report.skipped == {"malformed_row": 1, "label_out_of_range": 1, "unknown_split": 1, "bad_number": 1}
    assert f"{path} row 10: malformed row, expected 3 fields (emotion, pixels, Usage), got 2" in caplog.text
    assert f"{path} row 11: label 7 is outside the label set 0..6" in caplog.text
    assert f"{path} row 12: Usage 'Validation' is not one of" in caplog.text
    assert f"{path} row 13: 'pixels' holds a value that is not a number" in caplog.text
    path.write_text("emotion,Usage\n3,Training\n")
    with pytest.raises(FaceDatasetError, match=r"fer2013.csv: missing columns \['pixels'\]"):
        load_face_dataset(path, format="fer2013")
    with pytest.raises(FaceDatasetError, match=r"gone.csv: missing; the FER2013 layout needs this file"):
        load_face_dataset(tmp_path / "gone.csv", format="fer2013")
    root = write_fer2013_folders(tmp_path)
    shutil.rmtree(root / "test")
    with pytest.raises(FaceDatasetError, match=r"FER-2013: not a FER2013 layout; expected FER2013"):
        load_face_dataset(root, format="fer2013")


def test_utkface_layout_damage(tmp_path, caplog):
    root = write_utkface(tmp_path)
    save_face(root / "30_2_0_20170116174525125.jpg.chip.jpg", 0)
    save_face(root / "30_0_7_20170116174525125.jpg.chip.jpg", 0)
    data, report = read_face_source(root)
    assert sizes(data) == EXPECTED_SIZES["utkface"]
    assert report.skipped == {"unparseable_name": 3, "label_out_of_range": 2}
    assert f"{root}/30_2_0_20170116174525125.jpg.chip.jpg (gender): label 2 is outside the label set 0..1" \
        in caplog.text
    assert f"{root}/30_0_7_20170116174525125.jpg.chip.jpg (race): label 7 is outside the label set 0..4" in caplog.text
    with pytest.raises(FaceDatasetError, match=r"nowhere: image folder missing; expected UTKFace"):
        load_face_dataset(tmp_path / "nowhere", format="utkface")
    for name in UTKFACE_BAD_NAMES[:2]:
        (root / name).rename(tmp_path / name)
    for path in root.iterdir():
        if path.name not in UTKFACE_BAD_NAMES:
            path.unlink()
    with pytest.raises(FaceDatasetError, match=r"(?s)no examples found.*61_1_20170109150557335.jpg.chip.jpg: file"):
        load_face_dataset(root, format="utkface")


def test_affectnet_layout_damage(tmp_path, caplog):
    root = write_affectnet(tmp_path)
    training = root / "Manually_Annotated_file_lists" / "training.csv"
    append(training, "601/short.jpg,1,2,3\n" + affectnet_row(601, "x.jpg", 11) + affectnet_row(601, "gone.jpg", 2)
           + affectnet_row(601, "y.jpg", "happy"))  # rows 13..16
    data, report = read_face_source(root)
    assert sizes(data) == EXPECTED_SIZES["affectnet"]
    assert report.skipped == {"malformed_row": 1, "label_out_of_range": 1, "missing_image": 1, "bad_label": 1}
    assert f"{training} row 13: malformed row, expected 9 fields" in caplog.text
    assert f"{training} row 14: label 11 is outside the label set 0..10" in caplog.text
    assert f"{training} row 15: image file {root}/Manually_Annotated_Images/601/gone.jpg does not exist" in caplog.text
    assert f"{training} row 16: label 'happy' is not an integer" in caplog.text
    with pytest.raises(FaceDatasetError, match=r"training.csv row 13: malformed row"):
        load_face_dataset(root, strict=True)
    with pytest.raises(FaceDatasetError, match=r"elsewhere: image folder missing; the AffectNet layout"):
        load_face_dataset(root, images_dir=tmp_path / "elsewhere")
    shutil.rmtree(root / "Manually_Annotated_Images")
    with pytest.raises(FaceDatasetError, match=r"Manually_Annotated_Images: image folder missing; the AffectNet"):
        load_face_dataset(root)
    (root / "Manually_Annotated_file_lists" / "validation.csv").unlink()
    with pytest.raises(FaceDatasetError, match=r"validation.csv: missing; the AffectNet layout needs this file"):
        load_face_dataset(root)


def test_celeba_layout_damage(tmp_path, caplog):
    root = write_celeba(tmp_path, "official")
    attributes = root / "Anno" / "list_attr_celeba.txt"
    append(attributes, "000007.jpg -1 1\n000008.jpg " + " ".join(["0"] * 40) + "\n000009.jpg " + " ".join(["1"] * 40)
           + "\n")  # lines 9..11: too few values, 0 instead of -1, no partition entry
    data, report = read_face_source(root)
    assert sizes(data) == EXPECTED_SIZES["celeba"]
    assert report.skipped == {"bad_attributes": 2, "no_partition": 1}
    assert f"{attributes} line 9: expected an image name and 40 values of 1/-1" in caplog.text
    assert f"{attributes} line 10: expected an image name and 40 values of 1/-1" in caplog.text
    assert f"{attributes} line 11: 000009.jpg has no partition 0/1/2 in Eval/list_eval_partition.txt" in caplog.text
    (root / "Img" / "img_align_celeba" / "000002.jpg").unlink()
    data, report = read_face_source(root)
    assert report.skipped["missing_image"] == 1 and sizes(data)["train"] == 2
    assert f"{attributes} line 4: image file {root}/Img/img_align_celeba/000002.jpg does not exist" in caplog.text
    shutil.rmtree(root / "Img")
    with pytest.raises(FaceDatasetError, match=r"Img/img_align_celeba: image folder missing; the CelebA layout"):
        load_face_dataset(root)
    attributes.unlink()
    with pytest.raises(FaceDatasetError, match=r"Anno/list_attr_celeba.txt: missing; the CelebA layout needs this"):
        load_face_dataset(root, format="celeba")


# ----------------------------------------------------------------------------------------------------------------------
# label names across datasets
# ----------------------------------------------------------------------------------------------------------------------


def test_label_aliases_map_dataset_names_onto_model_names():
    assert [canonical_expression(name) for name in ("Happiness", "sadness", "anger", "surprised", "fearful",
                                                    "disgusted", "contempt")] == \
        ["happy", "sad", "angry", "surprise", "fear", "disgust", "contempt"]
    mapping = map_label_names(RAFDB_LABELS, FER2013_LABELS)
    assert [FER2013_LABELS[index] for index in mapping] == ["surprise", "fear", "disgust", "happy", "sad", "angry",
                                                            "neutral"]
    assert map_label_names(AFFECTNET_LABELS[:7], FER2013_LABELS) == [6, 3, 4, 5, 2, 1, 0]
    with pytest.raises(ValueError, match=r"(?s)\['contempt'\] have no counterpart.*classes=7.*dataset labels \["
                                         r"'neutral'.*'contempt'\]; model labels \['angry'"):
        map_label_names(AFFECTNET_LABELS, FER2013_LABELS)
    with pytest.raises(ValueError, match="several dataset classes map onto one model class"):
        map_label_names(["happy", "joy"], FER2013_LABELS)
