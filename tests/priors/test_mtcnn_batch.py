"""MTCNN over many images at once (`detect_batch`, the onnxruntime cascade, batched NMS and crops) finds what the
one-image `detect` finds (real weights, scikit-image's public-domain astronaut)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from etfuser_hf.priors import mtcnn_onnx
from etfuser_hf.priors.box_ops import area_crops, batched_nms, nms, summed_area_table
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.mtcnn import MTCNN, _crops
from etfuser_hf.priors.mtcnn_onnx import FAST_NETS, OnnxMTCNN, mtcnn_onnx_cached


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN.from_pretrained(ensure_face_priors(names=["mtcnn"])["mtcnn"])


def _images() -> list[np.ndarray]:
    """Faces at two sizes (two same-sized images stack into one PNet batch), a mirrored one, and a face-less one."""
    photo = data.astronaut()
    crop = np.ascontiguousarray(photo[:256, 100:356])
    return [photo, crop, np.ascontiguousarray(crop[:, ::-1]), np.full((120, 160, 3), 90, np.uint8),
            np.ascontiguousarray(photo[20:300, 40:460])]


def _assert_same(batched, reference):
    assert len(batched) == len(reference)
    for (boxes, scores, points), (ref_boxes, ref_scores, ref_points) in zip(batched, reference):
        assert boxes.shape == ref_boxes.shape and points.shape == ref_points.shape
        assert boxes.dtype == scores.dtype == points.dtype == np.float32
        np.testing.assert_allclose(boxes, ref_boxes, atol=1e-3)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
        np.testing.assert_allclose(points, ref_points, atol=1e-3)


def test_batched_nms_keeps_what_nms_keeps_image_by_image():
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        corners = torch.rand(300, 2, generator=generator) * 100
        boxes = torch.cat([corners, corners + torch.rand(300, 2, generator=generator) * 30 + 2], dim=1)
        scores, groups = torch.rand(300, generator=generator), torch.randint(0, 4, (300,), generator=generator)
        for mode in ("union", "min"):
            kept = batched_nms(boxes, scores, groups, 0.5, mode)
            assert torch.all(scores[kept][:-1] >= scores[kept][1:])  # best first
            for group in range(4):
                members = torch.nonzero(groups == group)[:, 0]
                expected = members[nms(boxes[members], scores[members], 0.5, mode)]
                assert kept[groups[kept] == group].tolist() == expected.tolist()
    assert batched_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


def test_area_crops_match_cropping_and_resizing_box_by_box():
    raw = torch.randint(0, 256, (60, 80, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    normalised = (raw.permute(2, 0, 1).float() - 127.5) / 128.0
    # inside, partly outside, one pixel, fractional corners, wholly outside, the whole image
    boxes = torch.tensor([[10.0, 5, 50, 45], [-5, -3, 20, 30], [10, 10, 11, 11], [3.4, 2.6, 40.5, 59.5],
                          [100, 100, 120, 130], [0, 0, 80, 60]])
    for size in (24, 48):
        crops = torch.from_numpy(area_crops(summed_area_table(raw.numpy()), boxes, size))
        torch.testing.assert_close(crops, _crops(normalised, boxes, size), atol=1e-5, rtol=0)


def test_summed_area_table_sums_every_corner_exactly_on_small_and_large_images():
    generator = np.random.default_rng(2)
    small = generator.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    table = summed_area_table(small)
    assert table.shape == (38, 54, 3) and table.dtype == np.int32
    np.testing.assert_array_equal(table[1:, 1:], small.astype(np.int64).cumsum(0).cumsum(1))
    assert not table[0].any() and not table[:, 0].any()
    # past int32's reach (3000 x 3000 x 255 > 2^31): int64 sums, still exact
    large = np.full((3000, 3000, 3), 255, np.uint8)
    large[-1, -1] = (0, 1, 2)
    table = summed_area_table(large)
    assert table.dtype == np.int64
    assert table[-1, -1].tolist() == [3000 * 3000 * 255 - 255, 3000 * 3000 * 255 - 254, 3000 * 3000 * 255 - 253]


def test_detect_batch_equals_detect_image_by_image(detector):
    images = _images()
    reference = [detector.detect(image) for image in images]
    assert [len(boxes) for boxes, _, _ in reference][:4] == [1, 1, 1, 0]
    _assert_same(detector.detect_batch(images), reference)
    # a PNet stack smaller than the batch (memory bound) changes nothing
    _assert_same(detector.detect_batch(images, max_pixels=256 * 256), reference)
    assert detector.detect_batch([]) == []


def test_onnxruntime_cascade_equals_detect_and_is_cached(detector, tmp_path):
    images = _images()
    assert not mtcnn_onnx_cached(detector, tmp_path)
    cascade = OnnxMTCNN(detector, cache_dir=tmp_path)
    assert mtcnn_onnx_cached(detector, tmp_path)
    assert sorted(path.name for path in cascade.folder.iterdir()) == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
    _assert_same(cascade.detect_batch(images), [detector.detect(image) for image in images])
    assert OnnxMTCNN(detector, cache_dir=tmp_path).folder == cascade.folder


def test_exported_forms_are_the_nets_bit_for_bit(detector):
    """The graphs exported for onnxruntime (PReLU as max(x, a x), max-pooling before PReLU) compute each net's
    function exactly: the same bits in PyTorch, on inputs spread over both signs (every slope's branch is taken)."""
    generator = torch.Generator().manual_seed(2)
    for name, shape in (("pnet", (3, 3, 37, 29)), ("rnet", (64, 3, 24, 24)), ("onet", (32, 3, 48, 48))):
        net = getattr(detector, name)
        pixels = torch.randn(shape, generator=generator) * 1.5
        with torch.no_grad():
            for fast, reference in zip(FAST_NETS[name](net)(pixels), net(pixels)):
                assert torch.equal(fast, reference), name
    assert any((prelu.weight > 1).any() for prelu in (detector.pnet.prelu1, detector.rnet.prelu1))  # negated branch
    assert all((prelu.weight < 0).any() for prelu in (detector.rnet.prelu1, detector.onet.prelu1))  # smallest branch


def test_onnxruntime_calls_split_by_pixels_change_nothing(detector, monkeypatch):
    """`_OnnxNet` runs at most PIXELS_PER_CALL input pixels per call: split or whole, the same outputs."""
    cascade = OnnxMTCNN(detector)
    crops = torch.randn(70, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    whole = cascade.nets[1](crops)
    monkeypatch.setattr(mtcnn_onnx, "PIXELS_PER_CALL", 24 * 24 * 16)  # 5 calls, the last one of 6 crops
    for split, reference in zip(cascade.nets[1](crops), whole):
        assert torch.equal(split, reference)
