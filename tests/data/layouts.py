"""Tiny copies of each dataset's official on-disk layout, written into a test's tmp_path: the exact file and folder
names, header lines and label codes of the distributions (RAF-DB's misspelt list_patition_label.txt and 1..7 labels
with `_aligned` images, UTKFace's three unparseable names, AffectNet's non-face labels 8..10, CelebA's -1/1
attributes under two header lines), with real face photos that ship with scikit-image (LFW faces, upscaled, and
the astronaut's face). Each writer returns the folder (or file) a user would pass to `load_face_dataset`; the
`EXPECTED_*` constants say what loading it must give."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import PIL.Image

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young").split()
CELEBA_LANDMARKS = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
                    "rightmouth_y").split()
CELEBA_PARTITIONS = [0, 0, 0, 1, 2, 2]  # 000001.jpg..000006.jpg
UTKFACE_BAD_NAMES = ("39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                     "61_1_20170109150557335.jpg.chip.jpg")  # the real aligned set's three names without a race
UTKFACE_NAMES = ("1_0_0_20161219200338012.jpg.chip.jpg", "26_1_2_20170116174525125.jpg.chip.jpg",
                 "35_0_1_20170117135212153.jpg.chip.jpg", "54_1_3_20170109142408075.jpg.chip.jpg",
                 "80_0_4_20170110182048376.jpg.chip.jpg")
RAFDB_ROWS = [("train_00001.jpg", 4), ("train_00002.jpg", 7), ("train_00003.jpg", 1), ("train_00004.jpg", 5),
              ("train_00005.jpg", 6), ("train_00006.jpg", 2), ("test_0001.jpg", 3), ("test_0002.jpg", 4),
              ("test_0003.jpg", 7)]
FER2013_USAGE = ["Training"] * 4 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")  # the release's folder names
AFFECTNET_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,"
                    "arousal")
EXPECTED_SIZES = {
    "rafdb": {"train": 6, "test": 3},
    "fer2013_csv": {"train": 4, "validation": 2, "test": 2},
    "fer2013_folders": {"train": 7, "test": 7},
    "utkface": 5, "utkface_wild": 6,
    "affectnet": {"train": 8, "test": 8}, "affectnet_7": {"train": 7, "test": 7},
    "celeba": {"train": 3, "validation": 1, "test": 2},
}


@functools.cache
def _lfw_faces() -> np.ndarray:
    import skimage.data

    return skimage.data.lfw_subset()[:100]  # the first 100 are faces (25x25 grey, floats in [0, 1])


def face(index: int, size: tuple[int, int] = (48, 48), grey: bool = False) -> PIL.Image.Image:
    """A real face photo: LFW face `index` upscaled to `size` (width, height), or with index -1 the astronaut's face."""
    if index < 0:
        import skimage.data

        image = PIL.Image.fromarray(skimage.data.astronaut()[20:220, 150:330])
    else:
        image = PIL.Image.fromarray((_lfw_faces()[index % 100] * 255).astype(np.uint8)).convert("RGB")
    image = image.resize(size, PIL.Image.BICUBIC)
    return image.convert("L") if grey else image


def save_face(path: Path, index: int, size: tuple[int, int] = (48, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    face(index, size).save(path, quality=90)
    return path


def write_rafdb(tmp_path: Path) -> Path:
    """RAF-DB/basic/: EmoLabel/list_patition_label.txt (labels 1..7) + Image/aligned/*_aligned.jpg (100x100)."""
    root = tmp_path / "RAF-DB" / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    lines = "".join(f"{name} {label}\n" for name, label in RAFDB_ROWS)
    (root / "EmoLabel" / "list_patition_label.txt").write_text(lines)
    for index, (name, _) in enumerate(RAFDB_ROWS):
        save_face(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), index, (100, 100))
    return root


def fer2013_row(emotion: int | str, usage: str, index: int) -> str:
    pixels = " ".join(str(value) for value in np.asarray(face(index, (48, 48), grey=True)).ravel())
    return f'{emotion},"{pixels}",{usage}\n'


def write_fer2013_csv(tmp_path: Path) -> Path:
    """fer2013/fer2013.csv: emotion, pixels (48x48 grey), Usage (Training / PublicTest / PrivateTest)."""
    path = tmp_path / "fer2013" / "fer2013.csv"
    path.parent.mkdir(parents=True)
    path.write_text("emotion,pixels,Usage\n" + "".join(fer2013_row(index % 7, usage, index)
                                                       for index, usage in enumerate(FER2013_USAGE)))
    return path


def write_fer2013_folders(tmp_path: Path) -> Path:
    """The image release: train/<class>/Training_*.jpg and test/<class>/PrivateTest_*.jpg, one image per class."""
    root = tmp_path / "FER-2013"
    for index, name in enumerate(FER2013_CLASSES):
        save_face(root / "train" / name / f"Training_{10118481 + index}.jpg", index)
        save_face(root / "test" / name / f"PrivateTest_{10131363 + index}.jpg", 10 + index)
    return root


def write_utkface(tmp_path: Path) -> Path:
    """UTKFace/ (aligned & cropped, 200x200): five parseable names and the real set's three unparseable ones."""
    root = tmp_path / "UTKFace"
    for index, name in enumerate(UTKFACE_NAMES + UTKFACE_BAD_NAMES):
        save_face(root / name, index, (64, 64))
    return root


def write_utkface_wild(tmp_path: Path) -> Path:
    """In-the-wild: part1/ part2/ part3/ of [age]_[gender]_[race]_[date&time].jpg."""
    root = tmp_path / "UTKFace-wild"
    for part in range(1, 4):
        for offset in range(2):
            save_face(root / f"part{part}" / f"{20 + part}_{offset}_{part}_2017011{part}17452{offset}125.jpg",
                      part * 2 + offset, (80, 60))
    return root


def affectnet_row(sub: int, name: str, expression: int | str, valence: float = 0.5, arousal: float = -0.25) -> str:
    points = ";".join(f"{10 + point % 17 * 3}.{point % 10};{20 + point // 17 * 9}.5" for point in range(68))
    return f'{sub}/{name},12,14,60,64,"{points}",{expression},{valence},{arousal}\n'


def write_affectnet(tmp_path: Path) -> Path:
    """Manually_Annotated_file_lists/{training,validation}.csv + Manually_Annotated_Images/<sub>/<hash>.jpg;
    training.csv holds every expression 0..10 (8..10: none, uncertain, non-face), validation.csv 0..7."""
    root = tmp_path / "AffectNet"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for file, expressions, first in (("training.csv", range(11), 0), ("validation.csv", range(8), 40)):
        lines = []
        for expression in expressions:
            sub, name = 600 + expression, f"{first + expression:040x}.jpg"
            save_face(root / "Manually_Annotated_Images" / str(sub) / name, first + expression, (96, 96))
            valence, arousal = (-2, -2) if expression >= 8 else (0.5, -0.25)  # AffectNet writes -2 for non-faces
            lines.append(affectnet_row(sub, name, expression, valence, arousal))
        (lists / file).write_text(AFFECTNET_HEADER + "\n" + "".join(lines))
    return root


def _celeba_attributes(index: int) -> list[int]:
    return [1 if (index * 7 + position) % 3 == 0 else -1 for position in range(len(CELEBA_ATTRIBUTES))]


def _celeba_points(index: int) -> list[int]:
    return [69 + index, 109, 106, 113, 77, 142 - index, 73, 152, 108, 154]


def write_celeba(tmp_path: Path, layout: str = "official") -> Path:
    """CelebA in the `official` (Anno/, Eval/, Img/), `kaggle` (CSVs, img_align_celeba/img_align_celeba/) or
    `torchvision` (flat .txt) layout, six images (178x218) split 3/1/2 by the partition file."""
    root = tmp_path / f"CelebA-{layout}"
    names = [f"{index:06d}.jpg" for index in range(1, len(CELEBA_PARTITIONS) + 1)]
    image_dir = {"official": "Img/img_align_celeba", "kaggle": "img_align_celeba/img_align_celeba",
                 "torchvision": "img_align_celeba"}[layout]
    for index, name in enumerate(names):
        save_face(root / image_dir / name, 20 + index, (178, 218))
    attributes = [_celeba_attributes(index) for index in range(len(names))]
    points = [_celeba_points(index) for index in range(len(names))]
    if layout == "kaggle":
        _write(root / "list_attr_celeba.csv", ",".join(["image_id", *CELEBA_ATTRIBUTES]) + "\n" + "".join(
            ",".join([name, *map(str, values)]) + "\n" for name, values in zip(names, attributes)))
        _write(root / "list_eval_partition.csv", "image_id,partition\n" + "".join(
            f"{name},{partition}\n" for name, partition in zip(names, CELEBA_PARTITIONS)))
        _write(root / "list_landmarks_align_celeba.csv", ",".join(["image_id", *CELEBA_LANDMARKS]) + "\n" + "".join(
            ",".join([name, *map(str, values)]) + "\n" for name, values in zip(names, points)))
        return root
    anno, evaluation = (root / "Anno", root / "Eval") if layout == "official" else (root, root)
    count = f"{len(names)}\n"
    _write(anno / "list_attr_celeba.txt", count + " ".join(CELEBA_ATTRIBUTES) + " \n" + "".join(
        name + " " + " ".join(f"{value:>2}" for value in values) + "\n" for name, values in zip(names, attributes)))
    _write(evaluation / "list_eval_partition.txt", "".join(
        f"{name} {partition}\n" for name, partition in zip(names, CELEBA_PARTITIONS)))
    _write(anno / "list_landmarks_align_celeba.txt", count + " ".join(CELEBA_LANDMARKS) + "\n" + "".join(
        name + " " + " ".join(f"{value:>4}" for value in values) + "\n" for name, values in zip(names, points)))
    _write(anno / "identity_CelebA.txt", "".join(f"{name} {2880 + index}\n" for index, name in enumerate(names)))
    _write(anno / "list_bbox_celeba.txt", count + "image_id x_1 y_1 width height\n" + "".join(
        f"{name}    95  71 226 313\n" for name in names))
    return root


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def expected_celeba_attributes(index: int) -> list[int]:
    """The 0/1 attribute vector the reader must give image `index` (0-based)."""
    return [int(value == 1) for value in _celeba_attributes(index)]


def expected_celeba_points(index: int) -> list[list[float]]:
    values = _celeba_points(index)
    return [[float(values[position]), float(values[position + 1])] for position in range(0, 10, 2)]
