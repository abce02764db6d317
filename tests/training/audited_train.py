"""`training/train.py` with its arguments, in a process that records what it writes: every file opened for writing,
folder created, file or folder renamed or deleted under the folders of $ETFUSER_AUDIT_WATCH (os.pathsep-separated),
as seen by Python's audit hooks, saved as `$ETFUSER_AUDIT_LOG/rank<RANK>.json` ({"event": ..., "path": ...} each)
when the process ends. Writes done in C without a Python open (torch.save's tensor file) are not seen; the folder they
go to, and a saved model's config.json, are. Run it under torchrun as training/train.py would be run."""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WATCHED = [os.path.realpath(folder) for folder in os.environ["ETFUSER_AUDIT_WATCH"].split(os.pathsep)]
LOG = Path(os.environ["ETFUSER_AUDIT_LOG"]) / f"rank{os.environ.get('RANK', '0')}.json"
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
writes: list[dict[str, str]] = []


def watched(path) -> str | None:
    """`path` resolved, where it lies under a watched folder; else None (file descriptors too)."""
    if isinstance(path, int) or path is None:
        return None
    resolved = os.path.realpath(os.fsdecode(path))
    return resolved if any(resolved == folder or resolved.startswith(folder + os.sep) for folder in WATCHED) else None


def record(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writing = any(letter in mode for letter in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
        paths = [path] if writing else []
    elif event == "os.mkdir":
        paths = [args[0]] if not os.path.exists(args[0]) else []  # makedirs(exist_ok=True) of a folder there: no write
    elif event in ("os.remove", "os.rmdir", "shutil.rmtree"):
        paths = [args[0]]
    elif event == "os.rename":
        paths = [args[0], args[1]]
    else:
        return
    for path in paths:
        resolved = watched(path)
        if resolved is not None:
            writes.append({"event": event, "path": resolved})


def save_log() -> None:
    text = json.dumps(writes)
    writes.clear()  # the log's own open is outside the watched folders; nothing to record after this
    LOG.write_text(text)


if __name__ == "__main__":
    atexit.register(save_log)
    sys.addaudithook(record)
    sys.argv = ["training/train.py", *sys.argv[1:]]
    runpy.run_path(str(REPO_ROOT / "training" / "train.py"), run_name="__main__")
