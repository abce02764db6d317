"""MTCNN's three networks under onnxruntime: on CPU its kernels run these small-channel convolutions and ceil-mode
poolings 1.7-2.5x faster than PyTorch's, and detection is most of the time a bulk analysis spends.

`OnnxMTCNN(detector)` exports PNet (dynamic batch, height and width), RNet and ONet (dynamic batch) once, cached
under `<cache>/mtcnn_onnx/<hash of the weights>/`, and `detect_batch(images)` runs the same cascade as
`MTCNN.detect_batch` with those sessions in place of the PyTorch modules.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .fetch import default_cache_dir
from .mtcnn import MTCNN, detect_batch

# Bump when the exported graphs change: part of the cache key.
EXPORT_VERSION = "1"
NETS = {"pnet": (12, {0: "batch", 2: "height", 3: "width"}), "rnet": (24, {0: "batch"}), "onet": (48, {0: "batch"})}


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


def ensure_mtcnn_onnx(detector: MTCNN, cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding `pnet.onnx`, `rnet.onnx` and `onet.onnx` for these weights, exporting what is missing."""
    folder = Path(cache_dir or default_cache_dir()) / "mtcnn_onnx" / weights_hash(detector)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (side, dynamic) in NETS.items():
        if not (folder / f"{name}.onnx").is_file():
            _export(getattr(detector, name), side, dynamic, folder / f"{name}.onnx")
    return folder


class _OnnxNet:
    """One exported network behind the PyTorch module's calling convention: tensor in, tuple of tensors out."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle onnxruntime threads spin by default, stealing the cores PyTorch needs between two calls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feed = np.ascontiguousarray(pixel_values.detach().float().numpy())
        outputs = self.session.run(None, {"pixel_values": feed})
        return tuple(torch.from_numpy(output) for output in outputs)


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


__all__ = ["EXPORT_VERSION", "OnnxMTCNN", "ensure_mtcnn_onnx", "weights_hash"]
