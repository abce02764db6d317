"""Writes the fixed inputs of the face-api reference fixtures (tests/priors/fixtures/faceapi/inputs_<size>.npy).

Each file is a uint8 RGB batch (2, size, size, 3) in 0..255, the pixels face-api itself takes: [0] the face of
scikit-image's astronaut photo (public domain) resized with PIL bilinear, [1] seeded uniform noise. Sizes are the
nets' own input sizes (150 recognition, 112 landmarks), so face-api applies no resizing and the comparison is exact.
Then run `node faceapi_reference.mjs` (see package.json here) to compute the original runtime's outputs.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "faceapi"
FACE_BOX = (145, 50, 305, 210)  # (left, top, right, bottom) of the astronaut's face in the 512x512 photo
SIZES = (150, 112)
SEED = 0


def make_inputs(size: int, rng: np.random.Generator) -> np.ndarray:
    face = np.asarray(Image.fromarray(data.astronaut()).crop(FACE_BOX).resize((size, size), Image.BILINEAR))
    noise = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return np.stack([face, noise])


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for size in SIZES:
        np.save(FIXTURES / f"inputs_{size}.npy", make_inputs(size, rng))
        print(FIXTURES / f"inputs_{size}.npy")


if __name__ == "__main__":
    main()
