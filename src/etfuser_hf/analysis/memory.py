"""The process's heap while a long analysis streams: glibc keeps what a chunk frees unless told otherwise, and the
resident size then grows with the length of the video although nothing is kept (`FaceAnalyzer` calls both functions:
`bound_heap_growth` once, `release_freed_memory` after every chunk). Both do nothing where the C library is not
glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library where it is glibc (it has `mallopt` and `malloc_trim`), else None (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    library = ctypes.CDLL(name) if name else None
    return library if library is not None and hasattr(library, "malloc_trim") else None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 4 << 20


def bound_heap_growth() -> None:
    """Makes glibc serve every block of 4 MiB or more (a chunk's frames, crops and tensors) with its own mmap, unmapped
    when freed. By default glibc raises that threshold as such blocks are freed, up to 32 MiB, and then carves them
    from the heap, where blocks of slightly different sizes from chunk to chunk fragment it: over the 38 chunks of a
    20-minute video the peak resident size grew from 838 to 1057 MiB; with 4 MiB, from 752 to 777 MiB, for 18 % more
    time than with the heap (1 MiB: flat at 738-746 MiB, but 41 % more time, spent zero-filling fresh pages; a
    per-chunk probe, and `benchmarks/analysis_long_video.py`). Process-wide; nothing elsewhere."""
    library = _glibc()
    if library is not None:
        library.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_freed_memory() -> None:
    """Hands the heap pages that the last chunk freed back to the OS (glibc's `malloc_trim(0)`; nothing elsewhere):
    the resident size between chunks then stays flat (595 -> 617 MiB over those 38 chunks, against 690 -> 1224 MiB
    without it or the fixed threshold)."""
    library = _glibc()
    if library is not None:
        library.malloc_trim(0)


__all__ = ["bound_heap_growth", "release_freed_memory"]
