"""Box operations for MTCNN over many images at once, in plain PyTorch (no torchvision, as the rest of `priors/`):
non-maximum suppression of many images' boxes in one call, and crop-and-resize of many boxes in one gather.

Both reproduce the one-image, one-box-at-a-time versions (`nms` here, `_crops` in `mtcnn.py`) up to float rounding, so
`MTCNN.detect_batch` finds the same faces as `MTCNN.detect`.
"""

from __future__ import annotations

import numpy as np
import torch

# Overlap matrices are (groups, n, n); above this many entries per call the groups are taken a few at a time, and a
# single group larger than that falls back to the sequential `nms` (a huge frame's first pyramid level).
MAX_MATRIX_ENTRIES = 1 << 24


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union") -> torch.Tensor:
    """Greedy non-maximum suppression. `boxes` (N, 4) as x1, y1, x2, y2; returns the kept indices, best first.
    `mode="min"` divides the intersection by the smaller area instead of the union (MTCNN's last stage)."""
    if mode not in ("union", "min"):
        raise ValueError(f"mode: expected 'union' or 'min', got {mode!r}.")
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = torch.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = torch.minimum(boxes[best, 2:], boxes[rest, 2:])
        intersection = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        if mode == "min":
            overlap = intersection / torch.minimum(areas[best], areas[rest]).clamp(min=1e-12)
        else:
            overlap = intersection / (areas[best] + areas[rest] - intersection).clamp(min=1e-12)
        order = rest[overlap <= threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)


def _overlaps(boxes: np.ndarray, mode: str) -> np.ndarray:
    """(G, n, 4) float32 -> (G, n, n) intersection over union (or over the smaller area with `mode="min"`), with the
    same float32 arithmetic as `nms` so that both suppress exactly the same boxes."""
    areas = (boxes[..., 2] - boxes[..., 0]).clip(min=0) * (boxes[..., 3] - boxes[..., 1]).clip(min=0)
    top_left = np.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    bottom_right = np.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    sides = (bottom_right - top_left).clip(min=0)
    intersection = sides[..., 0] * sides[..., 1]
    tiny = boxes.dtype.type(1e-12)
    if mode == "min":
        return intersection / np.maximum(np.minimum(areas[:, :, None], areas[:, None, :]), tiny)
    return intersection / np.maximum(areas[:, :, None] + areas[:, None, :] - intersection, tiny)


def _greedy_keep(suppresses: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Greedy NMS on a precomputed matrix: `suppresses[g, i, j]` (i ranked above j) says a kept box i removes j.

    Box j is kept iff no kept box above it suppresses it. Iterating that rule from "all kept" fixes one more rank per
    round at least, and its fixed point is unique (rank by rank), so stopping when nothing changes gives exactly the
    sequential greedy result in as many rounds as the longest chain of suppressions, not one round per box."""
    keep = valid.copy()
    while True:
        suppressed = (suppresses & keep[:, :, None]).any(axis=1)
        updated = valid & ~suppressed
        if np.array_equal(updated, keep):
            return keep
        keep = updated


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float,
                mode: str = "union") -> torch.Tensor:
    """Non-maximum suppression within each group (image) at once: `boxes` (N, 4) x1, y1, x2, y2, `scores` (N,),
    `groups` (N,) int. Returns the kept indices ordered by descending score (so each group's are best first), the same
    boxes `mtcnn.nms` keeps group by group.

    In numpy: the matrices are small (tens of boxes per image and scale) and the steps many, and torch's OpenMP
    parallel regions stall on every step whenever another process holds a core (2.4 s of a 12 s analysis of 192
    faces on the shared machine went to this function in torch)."""
    if mode not in ("union", "min"):
        raise ValueError(f"mode: expected 'union' or 'min', got {mode!r}.")
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long)
    # numpy has no bfloat16; float32 and float64 boxes keep their precision, as in `nms`
    exact = boxes.dtype in (torch.float32, torch.float64)
    box_array = (boxes.detach() if exact else boxes.detach().float()).numpy()
    score_array, group_array = scores.detach().to(torch.float64).numpy(), groups.numpy()
    # rank by score, then gather each group's boxes into one padded row: (G, n_max, 4)
    by_score = _descending(score_array)
    order = by_score[np.argsort(group_array[by_score], kind="stable")]
    boundaries = np.flatnonzero(np.diff(group_array[order])) + 1
    starts = np.concatenate([[0], boundaries])
    counts = np.diff(np.concatenate([starts, [len(order)]]))
    kept = []
    start_group, total = 0, len(counts)
    while start_group < total:
        widest = int(counts[start_group])
        if widest * widest > MAX_MATRIX_ENTRIES:
            members = order[starts[start_group]: starts[start_group] + widest]
            chosen = nms(boxes[torch.from_numpy(members)], scores[torch.from_numpy(members)], threshold, mode)
            kept.append(members[chosen.numpy()])
            start_group += 1
            continue
        end_group = start_group + 1
        while end_group < total:
            width = max(widest, int(counts[end_group]))
            if (end_group - start_group + 1) * width * width > MAX_MATRIX_ENTRIES:
                break
            widest, end_group = width, end_group + 1
        kept.append(_suppress_groups(box_array, order, starts[start_group:end_group], counts[start_group:end_group],
                                     widest, threshold, mode))
        start_group = end_group
    kept = np.concatenate(kept)
    return torch.from_numpy(kept[_descending(score_array[kept])].astype(np.int64))


def _descending(values: np.ndarray) -> np.ndarray:
    """Indices sorting `values` best first, ties in their original order (torch's stable descending argsort)."""
    return np.argsort(-values, kind="stable")


def _suppress_groups(boxes: np.ndarray, order: np.ndarray, starts: np.ndarray, counts: np.ndarray, width: int,
                     threshold: float, mode: str) -> np.ndarray:
    positions = np.arange(width)
    valid = positions[None, :] < counts[:, None]
    members = order[np.minimum(starts[:, None] + positions[None, :], len(order) - 1)]
    padded = boxes[members] * valid[..., None]
    above = np.triu(np.ones((width, width), dtype=bool), k=1)
    suppresses = (_overlaps(padded, mode) > boxes.dtype.type(threshold)) & above & valid[:, :, None] & valid[:, None, :]
    return members[_greedy_keep(suppresses, valid)]


def summed_area_table(image: np.ndarray) -> np.ndarray:
    """uint8 `image` (H, W, 3) -> (H + 1, W + 1, 3) integer table, `table[y, x]` = the sum of `image[:y, :x]` per
    channel (OpenCV's `integral`, ten times numpy's two cumulative sums). Integer sums are exact (a float32 table would
    lose small boxes' few-pixel cells in a large image's running sums): int32 up to 8.4 megapixels, beyond that the
    sums are taken in float64 (exact to 2^53) and returned as int64."""
    import cv2

    height, width = image.shape[:2]
    image = np.ascontiguousarray(image)
    if height * width * 255 < 2**31:
        return cv2.integral(image, sdepth=cv2.CV_32S)
    return cv2.integral(image, sdepth=cv2.CV_64F).astype(np.int64)


def area_crops(table: np.ndarray, boxes: torch.Tensor, size: int) -> np.ndarray:
    """Every box of `boxes` (N, 4; rounded to pixels) cut out of the image whose `summed_area_table` is `table` and
    area-resized to `size` x `size`, in MTCNN's input range ((pixel - 127.5) / 128, 0 outside the image): (N, 3, size,
    size) float32, from four gathers.

    Area resizing averages, for each output cell, the input rows [floor(i h / size), ceil((i + 1) h / size)) and
    the columns likewise (PyTorch's adaptive average pooling, which `F.interpolate(mode="area")` is); the table gives
    each cell's sum from its four corners. Pixels outside the image are 0 after normalisation, i.e. 127.5 before.
    numpy, not torch: these are many small element-wise steps, and torch's OpenMP parallel regions stall on every one
    of them when another process holds a core (up to 70x slower on a shared 2-core machine)."""
    count = boxes.shape[0]
    if count == 0:
        return np.zeros((0, 3, size, size), np.float32)
    height, width = table.shape[0] - 1, table.shape[1] - 1
    x1, y1, x2, y2 = boxes.round().long().numpy().T  # torch's rounding, as the box-by-box crops
    x2, y2 = np.maximum(x2, x1 + 1), np.maximum(y2, y1 + 1)
    cells = np.arange(size)

    def bounds(first: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low = first[:, None] + cells[None] * length[:, None] // size
        high = first[:, None] + ((cells[None] + 1) * length[:, None] + size - 1) // size
        return low, high  # (N, size) each

    top, bottom = bounds(y1, y2 - y1)
    left, right = bounds(x1, x2 - x1)
    cell_area = ((bottom - top)[:, :, None] * (right - left)[:, None, :]).astype(np.float32)
    top, bottom = top.clip(0, height), bottom.clip(0, height)
    left, right = left.clip(0, width), right.clip(0, width)
    inside = ((bottom - top)[:, :, None] * (right - left)[:, None, :]).astype(np.float32)
    flat = table.reshape(-1)
    channel = np.arange(3)[:, None, None, None]

    def corner(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:  # (3, N, size, size)
        return flat.take(channel + (rows * ((width + 1) * 3))[None, :, :, None] + (cols * 3)[None, :, None, :])

    # integer arithmetic until each cell's sum is known (exact), float only for the per-cell mean
    sums = (corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)).astype(np.float32)
    normalised = (sums - np.float32(127.5) * inside) / (np.float32(128.0) * cell_area)
    return np.ascontiguousarray(normalised.transpose(1, 0, 2, 3))


__all__ = ["MAX_MATRIX_ENTRIES", "area_crops", "batched_nms", "nms", "summed_area_table"]
