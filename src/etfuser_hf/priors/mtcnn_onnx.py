"""MTCNN's three networks under onnxruntime: on CPU its kernels run these small-channel convolutions and ceil-mode
poolings 1.7-2.5x faster than PyTorch's, and detection is most of the time a bulk analysis spends.

`OnnxMTCNN(detector)` exports PNet (dynamic batch, height and width), RNet and ONet (dynamic batch) once, cached
under `<cache>/mtcnn_onnx/<hash of the weights>/`, and `detect_batch(images)` runs the same cascade as
`MTCNN.detect_batch` with those sessions in place of the PyTorch modules.

Two things make the sessions cheaper without changing a bit of their outputs (measured on one core: RNet on 1,745
crops 196 -> ~105 ms, ONet on 200 crops 122 -> ~73 ms, PNet's first pyramid level of 32 images 95 -> ~52 ms):
- the graphs exported are `FastPNet`/`FastRNet`/`FastONet`, the same functions written with cheaper operators.
  onnxruntime's PRelu is several times slower than a Mul and a Max, and it takes a convolution's output out of the
  blocked (NCHWc) layout at full size before the pooling that follows. So PReLU is written `max(x, a x)` (exact for a
  slope a <= 1; a channel with a > 1 is negated around it, `s max(s x, s a x)` with s = -1, exact as well), and a
  max-pooling of a PReLU is taken before it: PReLU is monotonic on either side of 0, so the largest PReLU in a window
  is the PReLU of the window's largest or of its smallest value (`max(prelu(maxpool(y)), prelu(-maxpool(-y)))`), and
  the PReLUs run on a quarter of the values.
- each call runs on at most `PIXELS_PER_CALL` input pixels (`_OnnxNet` splits larger batches): the first layers'
  outputs then stay in the core's cache instead of streaming ~100 MB through memory (RNet on 1,745 crops at once).
  Each crop and image is computed on its own, so the split changes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .fetch import default_cache_dir
from .mtcnn import MTCNN, MTCNNONet, MTCNNPNet, MTCNNRNet, _flatten_transposed, detect_batch
from .onnx_sessions import cpu_session

# Bump when the exported graphs change: part of the cache key.
EXPORT_VERSION = "2"
NETS = {"pnet": (12, {0: "batch", 2: "height", 3: "width"}), "rnet": (24, {0: "batch"}), "onet": (48, {0: "batch"})}
# input pixels per onnxruntime call (batch x height x width): the first layers' outputs (10-32 channels) stay in cache
PIXELS_PER_CALL = 1 << 15


class _PReLU(nn.Module):
    """`prelu(x)` with per-channel slopes a, as `max(x, a x)`: exact where a <= 1 (x > 0: x >= a x; x <= 0: a x >= x).
    Channels with a > 1 are negated around it: `s max(s x, (s a) x)` with s = -1 is `min(x, a x)`, their PReLU (sign
    changes are exact). `channel_dim` 1 for (N, C, H, W), -1 for (N, C)."""

    def __init__(self, prelu: nn.PReLU, channel_dim: int):
        super().__init__()
        slopes = prelu.weight.detach().float()
        shape = (-1, 1, 1) if channel_dim == 1 else (-1,)
        self.negate = bool((slopes > 1).any())  # decided here, at export time: the graph has no branch
        signs = torch.where(slopes > 1, -1.0, 1.0)
        self.register_buffer("signs", signs.reshape(shape), persistent=False)
        self.register_buffer("slopes", (signs * slopes).reshape(shape), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.negate:
            return self.signs * torch.maximum(self.signs * hidden, self.slopes * hidden)
        return torch.maximum(hidden, self.slopes * hidden)


class _PooledPReLU(nn.Module):
    """`max_pool2d(prelu(x))` (ceil mode) with the pooling first: PReLU decreases (a < 0) or increases up to 0 and
    increases after it, so its largest value over a window is at the window's largest or smallest x."""

    def __init__(self, prelu: nn.PReLU, kernel: int, stride: int):
        super().__init__()
        self.prelu, self.kernel, self.stride = _PReLU(prelu, 1), kernel, stride

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        largest = F.max_pool2d(hidden, self.kernel, self.stride, ceil_mode=True)
        smallest = -F.max_pool2d(-hidden, self.kernel, self.stride, ceil_mode=True)
        return torch.maximum(self.prelu(largest), self.prelu(smallest))


class FastPNet(nn.Module):
    """`MTCNNPNet`'s function, bit for bit, with onnxruntime's cheaper operators (module docstring)."""

    def __init__(self, net: MTCNNPNet):
        super().__init__()
        self.net = net
        self.block1 = _PooledPReLU(net.prelu1, 2, 2)
        self.prelu2, self.prelu3 = _PReLU(net.prelu2, 1), _PReLU(net.prelu3, 1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        hidden = self.prelu3(net.conv3(self.prelu2(net.conv2(self.block1(net.conv1(pixel_values))))))
        return net.conv4_2(hidden), net.conv4_1(hidden).softmax(dim=1)


class FastRNet(nn.Module):
    """`MTCNNRNet`'s function, bit for bit, with onnxruntime's cheaper operators (module docstring)."""

    def __init__(self, net: MTCNNRNet):
        super().__init__()
        self.net = net
        self.block1, self.block2 = _PooledPReLU(net.prelu1, 3, 2), _PooledPReLU(net.prelu2, 3, 2)
        self.prelu3, self.prelu4 = _PReLU(net.prelu3, 1), _PReLU(net.prelu4, -1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        hidden = self.block2(net.conv2(self.block1(net.conv1(pixel_values))))
        hidden = self.prelu4(net.dense4(_flatten_transposed(self.prelu3(net.conv3(hidden)))))
        return net.dense5_2(hidden), net.dense5_1(hidden).softmax(dim=1)


class FastONet(nn.Module):
    """`MTCNNONet`'s function, bit for bit, with onnxruntime's cheaper operators (module docstring)."""

    def __init__(self, net: MTCNNONet):
        super().__init__()
        self.net = net
        self.block1, self.block2 = _PooledPReLU(net.prelu1, 3, 2), _PooledPReLU(net.prelu2, 3, 2)
        self.block3 = _PooledPReLU(net.prelu3, 2, 2)
        self.prelu4, self.prelu5 = _PReLU(net.prelu4, 1), _PReLU(net.prelu5, -1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        net = self.net
        hidden = self.block3(net.conv3(self.block2(net.conv2(self.block1(net.conv1(pixel_values))))))
        hidden = self.prelu5(net.dense5(_flatten_transposed(self.prelu4(net.conv4(hidden)))))
        return net.dense6_2(hidden), net.dense6_3(hidden), net.dense6_1(hidden).softmax(dim=1)


FAST_NETS = {"pnet": FastPNet, "rnet": FastRNet, "onet": FastONet}


def weights_hash(detector: MTCNN) -> str:
    """sha256 over the detector's parameters (names and bytes) and EXPORT_VERSION: the export cache key."""
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    for name, tensor in sorted(detector.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _export(net: torch.nn.Module, side: int, dynamic: dict[int, str], path: Path) -> None:
    example = torch.zeros(2, 3, side * 2, side * 2) if side == 12 else torch.zeros(2, 3, side, side)
    dims = {axis: torch.export.Dim(name, min=1 if axis == 0 else side) for axis, name in dynamic.items()}
    program = torch.onnx.export(net.float().eval(), (example,), dynamo=True, input_names=["pixel_values"],
                                verbose=False, dynamic_shapes={"pixel_values": dims})
    # a process killed mid-write must not leave a truncated graph in the cache
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    program.save(str(partial))
    os.replace(partial, path)


def mtcnn_onnx_folder(detector: MTCNN, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the exports of these weights are cached (`ensure_mtcnn_onnx` writes them)."""
    return Path(cache_dir or default_cache_dir()) / "mtcnn_onnx" / weights_hash(detector)


def mtcnn_onnx_cached(detector: MTCNN, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether `OnnxMTCNN(detector, cache_dir)` finds all three exports in the cache (exports nothing)."""
    folder = mtcnn_onnx_folder(detector, cache_dir)
    return all((folder / f"{name}.onnx").is_file() for name in NETS)


def ensure_mtcnn_onnx(detector: MTCNN, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding `pnet.onnx`, `rnet.onnx` and `onet.onnx` for these weights, exporting what is missing."""
    folder = mtcnn_onnx_folder(detector, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (side, dynamic) in NETS.items():
        if not (folder / f"{name}.onnx").is_file():
            _export(FAST_NETS[name](getattr(detector, name)), side, dynamic, folder / f"{name}.onnx")
    return folder


class _OnnxNet:
    """One exported network behind the PyTorch module's calling convention: tensor in, tuple of tensors out."""

    def __init__(self, path: Path):
        self.session = cpu_session(path)

    def __call__(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = np.ascontiguousarray(pixel_values.detach().float().numpy())
        step = max(1, PIXELS_PER_CALL // (feed.shape[2] * feed.shape[3]))  # PIXELS_PER_CALL: outputs stay in cache
        parts = [self.session.run(None, {"pixel_values": feed[start:start + step]})
                 for start in range(0, max(len(feed), 1), step)]
        if len(parts) == 1:
            return tuple(torch.from_numpy(output) for output in parts[0])
        return tuple(torch.from_numpy(np.concatenate(outputs)) for outputs in zip(*parts))


class OnnxMTCNN:
    """`detector`'s cascade with its three networks run by onnxruntime (exported once, cached by weight hash)."""

    def __init__(self, detector: MTCNN, cache_dir: str | os.PathLike | None = None):
        self.detector = detector
        self.folder = ensure_mtcnn_onnx(detector, cache_dir)
        self.nets = tuple(_OnnxNet(self.folder / f"{name}.onnx") for name in NETS)

    def detect_batch(self, images: Sequence[np.ndarray], max_pixels: int = 1 << 22
                     ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`MTCNN.detect_batch`, with the networks under onnxruntime."""
        return detect_batch(self.detector, images, max_pixels, nets=self.nets)


__all__ = ["EXPORT_VERSION", "FAST_NETS", "PIXELS_PER_CALL", "FastONet", "FastPNet", "FastRNet", "OnnxMTCNN",
           "ensure_mtcnn_onnx", "mtcnn_onnx_cached", "mtcnn_onnx_folder", "weights_hash"]
