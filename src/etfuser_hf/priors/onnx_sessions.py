"""How the package's onnxruntime sessions run on CPU (MTCNN's three networks, the analysis graph and its landmark
stage): one place for the options they share.

A face analysis is a pipeline of threads (`analysis/pipeline.py`: a reader decodes, a worker detects, the caller runs
the networks), so its parallelism is the stages', not each session's. onnxruntime's default of one intra-op thread
per core put two pools on top of two stages on a 2-core machine: `analyze(backend="onnx")` on the 192 faces of
`benchmarks/analysis_throughput.py`, run back to back both ways in one session (2026-12-07), cost ~8.9 s of CPU against
~7.9 s with `intra_op_threads()` = 1, and 5.1 s against 4.7 s of wall time. Each session takes half the cores the
process may use (the two busy stages), at least one.
"""

from __future__ import annotations

import os
from pathlib import Path


def intra_op_threads() -> int:
    """Threads per session: half the cores this process may run on, at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


def cpu_session(path: str | os.PathLike):
    """An onnxruntime CPU session over the graph at `path`, all graph optimisations on, `intra_op_threads()` threads
    that sleep rather than spin between calls (spinning threads steal the cores the other stages need)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(Path(path)), options, providers=["CPUExecutionProvider"])


__all__ = ["cpu_session", "intra_op_threads"]
