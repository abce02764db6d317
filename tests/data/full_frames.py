"""Full-frame real photos in an image folder (the detector's path of `data.alignment`): scikit-image's astronaut and
matplotlib's Grace Hopper, each whole, mirrored and rescaled, under two class folders, and scikit-image's cat, where
MTCNN finds no human face (a detector miss)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image


def photos() -> dict[str, np.ndarray]:
    """name -> uint8 (H, W, 3) RGB: two face photos and one without a human face."""
    import matplotlib.cbook
    import skimage.data

    with PIL.Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        hopper = np.asarray(image.convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "hopper": hopper, "cat": skimage.data.chelsea()}


def write_full_frames(root: Path, with_miss: bool = True) -> Path:
    """An imagefolder (`<class>/*.png`) of full frames: per face photo the whole frame, its mirror and a 3/4 rescale,
    two classes of them, and the cat in class `b` when `with_miss`. Returns the folder."""
    frames = photos()
    for label, name in (("a", "astronaut"), ("b", "hopper")):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        image = PIL.Image.fromarray(frames[name])
        variants = {"whole": image, "mirror": image.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT),
                    "small": image.resize((image.width * 3 // 4, image.height * 3 // 4), PIL.Image.BILINEAR),
                    "crop": image.crop((10, 5, image.width - 20, image.height - 10))}
        for variant, picture in variants.items():
            picture.save(folder / f"{name}_{variant}.png")
    if with_miss:
        PIL.Image.fromarray(frames["cat"]).save(root / "b" / "cat.png")
    return root
