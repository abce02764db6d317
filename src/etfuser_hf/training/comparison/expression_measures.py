"""Which tasks get the measures that only mean something for expression: the real-face agreement with the FER net
(`forgetting.py`) and distillation toward the pretrained network (`distillation.py`). Both read the FER net's
classes by name, so they run only where the task's classes are expression classes (through the alias table:
RAF-DB's "happiness" is the FER net's "happy"); elsewhere (age groups, mask, AffectNet's contempt) they are skipped,
announced once per job by `announce_skipped`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...data.label_aliases import is_expression_label_set

MEASURES = "real-face agreement and distillation toward the FER net"


def expression_measures_apply(label_names: Sequence[str] | None) -> bool:
    """Whether a task with classes `label_names` (None: not a classification task) gets the expression measures."""
    return label_names is not None and is_expression_label_set(label_names)


def skipped_line(label_names: Mapping[str, Sequence[str] | None]) -> str | None:
    """One line naming the tasks (task -> class names, None for regression / landmarks) the measures skip, or None
    when every task is an expression task."""
    skipped = [f"{task} ({'classes ' + ', '.join(map(str, names)) if names is not None else 'not classification'})"
               for task, names in label_names.items() if not expression_measures_apply(names)]
    return f"{MEASURES} skipped (not expression classes): {'; '.join(skipped)}" if skipped else None


def announce_skipped(label_names: Mapping[str, Sequence[str] | None]) -> None:
    """Prints `skipped_line` where there is one."""
    line = skipped_line(label_names)
    if line:
        print(line, flush=True)
