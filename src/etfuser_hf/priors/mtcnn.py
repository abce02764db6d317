"""MTCNN (Zhang et al. 2016): the three cascade networks, re-implemented in plain PyTorch with the parameter names of
facenet-pytorch's state dicts (so conversion is a plain copy), and the cascade that detects faces and five landmarks."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .box_ops import area_crops, batched_nms, nms, summed_area_table

MTCNN_DEFAULTS = {"min_face_size": 20.0, "thresholds": [0.6, 0.7, 0.7], "factor": 0.709}


class MTCNNPNet(nn.Module):
    """Proposal net: fully convolutional, one 12x12 window per output cell (stride 2).

    Returns `(box_offsets (B, 4, h, w), face_probs (B, 2, h, w))`, channel 1 of `face_probs` being "face"."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.max_pool2d(self.prelu1(self.conv1(pixel_values)), 2, 2, ceil_mode=True)
        hidden = self.prelu3(self.conv3(self.prelu2(self.conv2(hidden))))
        return self.conv4_2(hidden), self.conv4_1(hidden).softmax(dim=1)


def _flatten_transposed(hidden: torch.Tensor) -> torch.Tensor:
    # The dense layers were trained (in the original TF port) on width-major feature maps.
    return hidden.permute(0, 3, 2, 1).flatten(1)


class MTCNNRNet(nn.Module):
    """Refinement net on 24x24 crops. Returns `(box_offsets (B, 4), face_probs (B, 2))`."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = F.max_pool2d(self.prelu1(self.conv1(pixel_values)), 3, 2, ceil_mode=True)
        hidden = F.max_pool2d(self.prelu2(self.conv2(hidden)), 3, 2, ceil_mode=True)
        hidden = self.prelu4(self.dense4(_flatten_transposed(self.prelu3(self.conv3(hidden)))))
        return self.dense5_2(hidden), self.dense5_1(hidden).softmax(dim=1)


class MTCNNONet(nn.Module):
    """Output net on 48x48 crops. Returns `(box_offsets (B, 4), landmarks (B, 10), face_probs (B, 2))`; landmarks are
    five x then five y, as fractions of the crop's width/height."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = F.max_pool2d(self.prelu1(self.conv1(pixel_values)), 3, 2, ceil_mode=True)
        hidden = F.max_pool2d(self.prelu2(self.conv2(hidden)), 3, 2, ceil_mode=True)
        hidden = F.max_pool2d(self.prelu3(self.conv3(hidden)), 2, 2, ceil_mode=True)
        hidden = self.prelu5(self.dense5(_flatten_transposed(self.prelu4(self.conv4(hidden)))))
        return self.dense6_2(hidden), self.dense6_3(hidden), self.dense6_1(hidden).softmax(dim=1)


def _apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Bounding-box regression: offsets are fractions of the box width/height added to each corner."""
    size = (boxes[:, 2:4] - boxes[:, 0:2]).repeat(1, 2)
    return boxes + offsets * size


def _squarify(boxes: torch.Tensor) -> torch.Tensor:
    """Grows each box to a square around its centre (the next stage's nets take square crops)."""
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    side = (boxes[:, 2:4] - boxes[:, 0:2]).max(dim=1, keepdim=True).values
    return torch.cat([centre - side / 2, centre + side / 2], dim=1)


def _crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cuts `boxes` (rounded to pixels; parts outside the image are zero) out of `image` (3, H, W, normalised) and
    area-resizes each to `size` x `size`. Returns (N, 3, size, size)."""
    height, width = image.shape[1:]
    crops = []
    for x1, y1, x2, y2 in boxes.round().long().tolist():
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        crop = image.new_zeros(3, y2 - y1, x2 - x1)
        ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if ix2 > ix1 and iy2 > iy1:
            crop[:, iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1] = image[:, iy1:iy2, ix1:ix2]
        crops.append(F.interpolate(crop[None], size=(size, size), mode="area"))
    return torch.cat(crops) if crops else image.new_zeros(0, 3, size, size)


class MTCNN(nn.Module):
    """The P/R/O-Net cascade. `detect(image)` takes one RGB uint8 image (H, W, 3) and returns boxes (N, 4), scores
    (N,) and landmarks (N, 5, 2) as float32 numpy arrays in image pixel coordinates, best score first.
    `detect_batch(images)` gives the same for many images, running each network over all of them at once."""

    def __init__(self, min_face_size: float = 20.0, thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709):
        super().__init__()
        self.pnet, self.rnet, self.onet = MTCNNPNet(), MTCNNRNet(), MTCNNONet()
        self.min_face_size = float(min_face_size)
        self.thresholds = [float(value) for value in thresholds]
        self.factor = float(factor)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> MTCNN:
        """Loads a folder written by `convert_face_priors.convert_mtcnn` (config.json + model.safetensors)."""
        path = Path(path)
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"path: {path} has no model.safetensors; run ensure_face_priors(names=['mtcnn']).")
        settings = {**MTCNN_DEFAULTS, **json.loads((path / "config.json").read_text())}
        detector = cls(settings["min_face_size"], settings["thresholds"], settings["factor"])
        detector.load_state_dict(load_file(path / "model.safetensors"), strict=True)
        return detector.eval()

    def _scales(self, height: int, width: int) -> list[float]:
        # The smallest face of interest maps onto PNet's 12-pixel window; then shrink by `factor` while PNet fits.
        scale = 12.0 / self.min_face_size
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.factor
            side *= self.factor
        return scales

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dtype = self.pnet.conv1.weight.dtype
        pixels = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).to(dtype)
        pixels = (pixels - 127.5) / 128.0
        height, width = pixels.shape[1:]

        # Stage 1: PNet over an image pyramid proposes windows.
        proposals = []
        for scale in self._scales(height, width):
            scaled = F.interpolate(pixels[None], size=(math.ceil(height * scale), math.ceil(width * scale)), mode="area")
            offsets, probs = self.pnet(scaled)
            rows, cols = torch.nonzero(probs[0, 1] >= self.thresholds[0], as_tuple=True)
            if rows.numel() == 0:
                continue
            corners = torch.stack([cols, rows], dim=1).to(dtype) * 2
            boxes = torch.cat([corners, corners + 12], dim=1) / scale
            scores = probs[0, 1, rows, cols]
            candidates = torch.cat([boxes, scores[:, None], offsets[0, :, rows, cols].T], dim=1)
            proposals.append(candidates[nms(boxes, scores, 0.5)])
        empty = (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))
        if not proposals:
            return empty
        candidates = torch.cat(proposals)
        candidates = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
        boxes = _squarify(_apply_offsets(candidates[:, :4], candidates[:, 5:9]))

        # Stage 2: RNet rescores and refines 24x24 crops.
        offsets, probs = self.rnet(_crops(pixels, boxes, 24))
        keep = probs[:, 1] > self.thresholds[1]
        boxes, scores, offsets = boxes[keep], probs[keep, 1], offsets[keep]
        if boxes.shape[0] == 0:
            return empty
        keep = nms(boxes, scores, 0.7)
        boxes = _squarify(_apply_offsets(boxes[keep], offsets[keep]))

        # Stage 3: ONet gives the final score, box and five landmarks from 48x48 crops.
        offsets, points, probs = self.onet(_crops(pixels, boxes, 48))
        keep = probs[:, 1] > self.thresholds[2]
        boxes, scores, offsets, points = boxes[keep], probs[keep, 1], offsets[keep], points[keep]
        if boxes.shape[0] == 0:
            return empty
        size = boxes[:, 2:4] - boxes[:, 0:2]
        landmarks = torch.stack([points[:, :5], points[:, 5:]], dim=2) * size[:, None, :] + boxes[:, None, 0:2]
        boxes = _apply_offsets(boxes, offsets)
        keep = nms(boxes, scores, 0.7, mode="min")
        return boxes[keep].float().numpy(), scores[keep].float().numpy(), landmarks[keep].float().numpy()

    def detect_batch(self, images: Sequence[np.ndarray], max_pixels: int = 1 << 22
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`detect` for a list of RGB uint8 images (any sizes): see `detect_batch` below."""
        return detect_batch(self, images, max_pixels)


def size_groups(images: Sequence[np.ndarray], max_pixels: int) -> list[list[int]]:
    """Indices of same-sized images (they stack into one PNet batch), split so no batch exceeds `max_pixels`."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(tuple(image.shape[:2]), []).append(index)
    groups = []
    for (height, width), members in by_size.items():
        step = max(1, max_pixels // (height * width))
        groups.extend(members[start:start + step] for start in range(0, len(members), step))
    return groups


def _crops_of(tables: dict[int, np.ndarray], boxes: torch.Tensor, owners: torch.Tensor, size: int) -> torch.Tensor:
    """`area_crops` for boxes of many images: one gather per image, the crops in the order of `boxes`."""
    crops = np.zeros((boxes.shape[0], 3, size, size), np.float32)
    owned = owners.numpy()
    for owner in np.unique(owned).tolist():
        mine = owned == owner
        crops[mine] = area_crops(tables[owner], boxes[torch.from_numpy(mine)], size)
    return torch.from_numpy(crops)


@torch.no_grad()
def detect_batch(detector: MTCNN, images: Sequence[np.ndarray], max_pixels: int = 1 << 22,
                 nets: tuple[Callable, Callable, Callable] | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`detector.detect` for many images at once: PNet runs once per pyramid scale over each stack of same-sized
    images (at most `max_pixels` input pixels per stack, which bounds memory on large frames), RNet and ONet once over
    the candidates of all images, and every suppression step handles all images in one `batched_nms` call.

    Returns one `(boxes (N, 4), scores (N,), landmarks (N, 5, 2))` float32 tuple per image, best score first, equal to
    `detector.detect(image)` up to float rounding. `nets` replaces `(detector.pnet, detector.rnet, detector.onet)` by
    callables with the same inputs and outputs (`mtcnn_onnx.OnnxMTCNN` passes onnxruntime sessions)."""
    pnet, rnet, onet = nets or (detector.pnet, detector.rnet, detector.onet)
    dtype = torch.float32 if nets else detector.pnet.conv1.weight.dtype
    arrays = [np.ascontiguousarray(image) for image in images]  # uint8 (H, W, 3)
    images = [torch.from_numpy(np.array(image, copy=True)) for image in arrays]
    empty = (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))
    if not images:
        return []

    # Stage 1: PNet over each stack's image pyramid proposes windows; suppression per image and scale.
    proposals, owners = [], []
    for group in size_groups(images, max_pixels):
        # normalised in place; for `nets` (onnxruntime) contiguous (N, 3, H, W), so the pyramid's levels come out ready
        # for them (channels-last levels were each copied again), the same values. PyTorch's PNet keeps the
        # channels-last stack (its convolution rounds differently on the two layouts)
        stack = torch.stack([images[index] for index in group]).permute(0, 3, 1, 2)
        layout = torch.contiguous_format if nets else torch.preserve_format
        stack = stack.to(dtype, memory_format=layout).sub_(127.5).div_(128.0)
        members = torch.tensor(group)
        height, width = stack.shape[2:]
        for scale in detector._scales(height, width):
            scaled = F.interpolate(stack, size=(math.ceil(height * scale), math.ceil(width * scale)), mode="area")
            offsets, probs = pnet(scaled)
            images_, rows, cols = torch.nonzero(probs[:, 1] >= detector.thresholds[0], as_tuple=True)
            if rows.numel() == 0:
                continue
            corners = torch.stack([cols, rows], dim=1).to(dtype) * 2
            boxes = torch.cat([corners, corners + 12], dim=1) / scale
            scores = probs[images_, 1, rows, cols]
            candidates = torch.cat([boxes, scores[:, None], offsets[images_, :, rows, cols]], dim=1)
            keep = batched_nms(boxes, scores, members[images_], 0.5)
            proposals.append(candidates[keep])
            owners.append(members[images_][keep])
    if not proposals:
        return [empty for _ in images]
    candidates, owners = torch.cat(proposals), torch.cat(owners)
    keep = batched_nms(candidates[:, :4], candidates[:, 4], owners, 0.7)
    candidates, owners = candidates[keep], owners[keep]
    boxes = _squarify(_apply_offsets(candidates[:, :4], candidates[:, 5:9]))
    # RNet's and ONet's crops come from one summed-area table per image (the images that still have candidates)
    tables = {owner: summed_area_table(arrays[owner]) for owner in owners.unique().tolist()}

    # Stage 2: RNet rescores and refines 24x24 crops of every image's candidates in one call.
    offsets, probs = rnet(_crops_of(tables, boxes, owners, 24))  # never empty: stage 1 kept at least one window
    keep = probs[:, 1] > detector.thresholds[1]
    boxes, scores, offsets, owners = boxes[keep], probs[keep, 1], offsets[keep], owners[keep]
    keep = batched_nms(boxes, scores, owners, 0.7)
    boxes, owners = _squarify(_apply_offsets(boxes[keep], offsets[keep])), owners[keep]
    if boxes.shape[0] == 0:
        return [empty for _ in images]

    # Stage 3: ONet gives the final score, box and five landmarks from 48x48 crops, again in one call.
    offsets, points, probs = onet(_crops_of(tables, boxes, owners, 48))
    keep = probs[:, 1] > detector.thresholds[2]
    boxes, scores, offsets, points, owners = boxes[keep], probs[keep, 1], offsets[keep], points[keep], owners[keep]
    size = boxes[:, 2:4] - boxes[:, 0:2]
    landmarks = torch.stack([points[:, :5], points[:, 5:]], dim=2) * size[:, None, :] + boxes[:, None, 0:2]
    boxes = _apply_offsets(boxes, offsets)
    keep = batched_nms(boxes, scores, owners, 0.7, mode="min")  # best first, so each image's share is too
    boxes, scores, landmarks = boxes[keep].float().numpy(), scores[keep].float().numpy(), landmarks[keep].float().numpy()
    owners = owners[keep].numpy()
    return [(boxes[owners == index], scores[owners == index], landmarks[owners == index]) for index in range(len(images))]
