"""One table per task: every protocol row as mean ± std over seeds of its TEST-split metric (validation beside it),
its significance against ET-Fuser on the test split (a paired t-test across seeds, and a paired test per seed on the
test predictions: exact McNemar for correctness, paired bootstrap for NME), and its parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .rows import row_tuning
from .statistics import mcnemar_pvalue, paired_bootstrap_pvalue, seed_ttest_pvalue
from .tasks import FaceTask

if TYPE_CHECKING:  # the type only: tables need numpy and scipy, not the Trainer
    from .trainer import RunResult

METRIC_LABELS = {"accuracy": "accuracy", "nme": "NME (lower is better)", "macro_f1": "macro-F1"}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value), rounded to 4 places."""
    values = np.asarray(values, np.float64)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4)}


def per_seed_pvalue(task: FaceTask, reference: RunResult, other: RunResult, seed: int) -> float:
    """The paired test of one seed's test predictions: McNemar on correctness, or bootstrap on per-image NME."""
    if reference.scores is None or other.scores is None:
        raise ValueError(f"{other.name}: per-example test scores are needed for the paired test.")
    if task.is_classification:
        return round(mcnemar_pvalue(reference.scores > 0.5, other.scores > 0.5), 4)
    return round(paired_bootstrap_pvalue(reference.scores, other.scores, seed=seed), 4)


def task_table(task: FaceTask, runs: Mapping[str, Sequence[RunResult]], seeds: Sequence[int], main: str,
               descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The table of `task` from `runs` (row name -> one result per seed, in `seeds` order)."""
    reference = runs[main]
    metric = task.metric
    rows = []
    for name, results in runs.items():
        if len(results) != len(seeds):
            raise ValueError(f"{task.name}/{name}: {len(results)} results for {len(seeds)} seeds.")
        test = [result.metrics[metric] for result in results]
        row: dict[str, Any] = {
            "variant": name,
            "description": (descriptions or {}).get(name, results[0].description),
            "test": {metric: mean_std(test), "per_seed": [round(value, 4) for value in test]},
            "validation": {metric: mean_std([result.validation_metrics[metric] for result in results])},
            "params_total": results[0].params.get("params_total"),
            "params_trainable": results[0].params.get("params_trainable"),
            "learning_rate": None if name.startswith("probe") else task.row_learning_rate(row_tuning(name)),
            "canonical_learning_rate_scale": task.row_overrides.get(row_tuning(name), {}).get(
                "backbone_learning_rate_scale", 1.0),
            "train_seconds": round(float(np.mean([result.seconds for result in results])), 1),
        }
        if task.is_classification:
            row["test"]["macro_f1"] = mean_std([result.metrics["macro_f1"] for result in results])
        if name != main:
            row["p_seeds_ttest_vs_main"] = seed_ttest_pvalue([result.metrics[metric] for result in reference], test)
            row["p_per_seed_vs_main"] = [per_seed_pvalue(task, ref, result, seed)
                                         for ref, result, seed in zip(reference, results, seeds)]
        rows.append(row)
    return {
        "task": task.name,
        "metric": metric,
        "greater_is_better": task.greater_is_better,
        "canonical": task.canonical,
        "learning_rate": task.learning_rate,
        "fusion_mode": dict(task.fusion).get("fusion_mode", "add_to_pooled"),
        "split": "test",
        "seeds": list(seeds),
        "tests": {"p_seeds_ttest_vs_main": "paired t-test across seeds (scipy.stats.ttest_rel), test split",
                  "p_per_seed_vs_main": ("exact McNemar (scipy.stats.binomtest) per seed, test split"
                                         if task.is_classification else
                                         "paired bootstrap of per-image NME (scipy.stats.bootstrap, 5000 resamples) "
                                         "per seed, test split")},
        "main_variant": main,
        "rows": rows,
    }


def _cell(statistic: Mapping[str, float]) -> str:
    return f"{statistic['mean']:.4f} ± {statistic['std']:.4f}"


def _params(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _rate(row: Mapping[str, Any]) -> str:
    """The row's learning rate, and the canonical model's where it trains slower than the new modules."""
    rate, scale = row.get("learning_rate"), row.get("canonical_learning_rate_scale", 1.0)
    if rate is None:
        return "—"
    return f"{rate:g}" if scale == 1.0 else f"{rate:g} (canonical {rate * scale:.3g})"


def render_task_table(table: Mapping[str, Any]) -> str:
    """Markdown of `task_table`: a heading naming the task, the metric and the split, then one line per row."""
    metric, main = table["metric"], table["main_variant"]
    per_seed_test = "McNemar" if metric == "accuracy" else "bootstrap"
    lines = [
        f"### {table['task']}: test-split {METRIC_LABELS.get(metric, metric)}, mean ± std over seeds "
        f"{', '.join(map(str, table['seeds']))} (canonical model: `{table['canonical']}`; et-fuser fusion mode "
        f"`{table.get('fusion_mode', 'add_to_pooled')}`; the canonical model fine-tuned at learning rate "
        f"{table.get('learning_rate', '?')} in every row, each row's rate chosen on validation in the lr column)",
        "",
        f"| variant | test {metric} | validation {metric} | p vs {main}, t-test over seeds (test split) | "
        f"p vs {main}, {per_seed_test} per seed (test split) | params | trainable | lr | description |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        t_test = row.get("p_seeds_ttest_vs_main")
        per_seed = row.get("p_per_seed_vs_main")
        lines.append(
            f"| {row['variant']} | {_cell(row['test'][metric])} | {_cell(row['validation'][metric])} | "
            f"{'—' if t_test is None else f'{t_test:.4f}'} | "
            f"{'—' if per_seed is None else ', '.join(f'{value:.4f}' for value in per_seed)} | "
            f"{_params(row['params_total'])} | {_params(row['params_trainable'])} | "
            f"{_rate(row)} | "
            f"{row['description']} |")
    return "\n".join(lines) + "\n"


def reading(table: Mapping[str, Any], alpha: float = 0.05) -> str:
    """One sentence per task from its numbers: where ET-Fuser stands against the canonical model and concat-mlp."""
    metric, main = table["metric"], table["main_variant"]
    better = 1.0 if table["greater_is_better"] else -1.0
    rows = {row["variant"]: row for row in table["rows"]}
    mean = {name: row["test"][metric]["mean"] for name, row in rows.items()}
    parts = []
    for other in ("canonical", "concat-mlp"):
        if other not in rows:
            continue
        gap = better * (mean[main] - mean[other])
        p = rows[other].get("p_seeds_ttest_vs_main")
        verdict = ("better than" if gap > 0 else "worse than" if gap < 0 else "level with")
        significant = p is not None and p < alpha
        parts.append(f"{verdict} {other} by {abs(mean[main] - mean[other]):.4f} {metric} "
                     f"(t-test over seeds p = {'n/a' if p is None else f'{p:.4f}'}, test split"
                     f"{'' if significant else ', not significant'})")
    return f"{table['task']}: ET-Fuser is " + "; ".join(parts) + "."
