"""One table per task, whatever its type: every protocol row as mean ± std over seeds of its TEST-split headline
metric (validation beside it) and the task's other metrics (macro-F1; RMSE and CCC beside each other), its
significance against ET-Fuser on the test split (a paired t-test across seeds, and a paired test per seed on the test
predictions: exact McNemar for single-label correctness, a paired permutation test of the per-example terms of any
other headline: NME, absolute or squared error, the share of attributes right), the t-test's p-values
Holm-corrected across the rows of the task, and its parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..comparison.rows import PROTOCOL_ROWS
from ..comparison.tasks import FaceTask, row_recipe
from .statistics import holm_adjusted, mcnemar_pvalue, paired_permutation_pvalue, seed_ttest_pvalue

if TYPE_CHECKING:  # the type only: tables need numpy and scipy, not the Trainer
    from ..run.trainer import RunResult

REAL_FACE_AGREEMENT = ("Agreement with the pretrained canonical network before fine-tuning on 101 real faces (scikit-image's "
                       "astronaut and LFW's 100; unlabelled, so an agreement, not an accuracy: how much of what it "
                       "knew about real faces survived fine-tuning on SYNTHETIC ones)")
METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "nme": "NME (lower is better)",
                 "multilabel_accuracy": "mean accuracy over labels", "multilabel_f1": "macro-F1 over labels",
                 "mae": "MAE (lower is better)", "rmse": "RMSE (lower is better)", "ccc": "CCC"}
TYPE_LABELS = {"single_label_classification": "single-label classification",
               "multi_label_classification": "multi-label classification", "regression": "regression",
               "landmarks": "landmarks"}
# what a permutation test compares per example, by headline metric (single-label accuracy is McNemar's)
PER_EXAMPLE_TERMS = {"nme": "per-image NME", "mae": "absolute error", "rmse": "squared error",
                     "multilabel_accuracy": "share of labels right"}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value), rounded to 4 places."""
    values = np.asarray(values, np.float64)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4)}


def _per_seed(results: Sequence[RunResult], attribute: str) -> dict[str, Any] | None:
    """A per-run measurement (`gate_magnitude`: mean |tanh(g)| of the selected checkpoint's gate;
    `real_face_agreement`: agreement with the pretrained canonical network on real faces) as mean ± std over seeds
    with the per-seed values; None for a row that does not have it."""
    values = [getattr(result, attribute) for result in results]
    if any(value is None for value in values):
        return None
    return {**mean_std(values), "per_seed": [round(value, 4) for value in values]}


def per_seed_pvalue(task: FaceTask, reference: RunResult, other: RunResult, seed: int) -> float:
    """The paired test of one seed's test predictions: McNemar on single-label correctness, or a permutation test on
    the headline metric's per-example terms (`RunResult.scores`)."""
    if reference.scores is None or other.scores is None:
        raise ValueError(f"{other.name}: per-example test scores are needed for the paired test.")
    if task.is_classification:
        return round(mcnemar_pvalue(reference.scores > 0.5, other.scores > 0.5), 4)
    return round(paired_permutation_pvalue(reference.scores, other.scores, seed=seed), 4)


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
            "learning_rate": results[0].learning_rate,
            "canonical_learning_rate_scale": results[0].canonical_learning_rate_scale,
            "augmentation": results[0].augmentation,
            "candidates": task.candidates_per_row.get(name),
            "gate_magnitude": _per_seed(results, "gate_magnitude"),
            "real_face_agreement": _per_seed(results, "real_face_agreement"),
            "train_seconds": round(float(np.mean([result.seconds for result in results])), 1),
        }
        for other in task.metrics[1:]:  # where every seed reports it (a probe reports what its fit can)
            if all(other in result.metrics for result in results):
                row["test"][other] = mean_std([result.metrics[other] for result in results])
        if name != main:
            row["p_seeds_ttest_vs_main"] = seed_ttest_pvalue([result.metrics[metric] for result in reference], test)
            row["p_per_seed_vs_main"] = [per_seed_pvalue(task, ref, result, seed)
                                         for ref, result, seed in zip(reference, results, seeds)]
        rows.append(row)
    others = [row for row in rows if row["variant"] != main]
    for row, adjusted in zip(others, holm_adjusted([row["p_seeds_ttest_vs_main"] for row in others])):
        row["p_seeds_ttest_vs_main_holm"] = None if adjusted is None else round(adjusted, 4)
    same_tokens = [token_against_concatenation(task, runs, seeds, token, concatenation)
                   for token, concatenation in same_token_pairs(task, runs, main)]
    return {
        "task": task.name,
        "problem_type": task.problem_type,
        "metric": metric,
        "metrics": list(task.metrics),
        "units": task.units,
        "greater_is_better": task.greater_is_better,
        "canonical": task.canonical,
        "learning_rate": task.learning_rate,
        "fusion_mode": {**task.fusion, **(task.spatial if task.main_tokens == "spatial" else {})}.get(
            "fusion_mode", "add_to_pooled"),
        "tokens": describe_tokens(task.spatial.get("prior_feature") if task.main_tokens == "spatial" else None),
        "spatial_tokens": describe_tokens(task.spatial.get("prior_feature")) if task.spatial else None,
        "split": "test",
        "seeds": list(seeds),
        "tests": {"p_seeds_ttest_vs_main": "paired t-test across seeds (scipy.stats.ttest_rel), test split",
                  "p_per_seed_vs_main": ("exact McNemar (scipy.stats.binomtest) per seed, test split"
                                         if task.is_classification else
                                         f"paired permutation test of the {PER_EXAMPLE_TERMS.get(metric, metric)} "
                                         f"(scipy.stats.permutation_test, permutation_type='samples', 5000 resamples) "
                                         "per seed, test split"),
                  "p_seeds_ttest_vs_main_holm": (f"the t-test's p-values Holm-corrected (step-down, family-wise "
                                                 f"error) across the {len(others)} rows compared with {main}")},
        "main_variant": main,
        "candidates_per_row": dict(task.candidates_per_row),
        "rows": rows,
        "same_tokens": same_tokens,
    }


def same_token_pairs(task: FaceTask, runs: Mapping[str, Any], main: str) -> list[tuple[str, str]]:
    """(ensemble-token row, concatenation row) pairs of `runs` that read the same prior tokens (`row_recipe`'s
    `prior_feature`): et-fuser, et-fuser-spatial and et-fuser-pooled, each with the first concatenation row that
    reads what it reads.
    Each row chooses its own tokens on validation (`FaceTask.main_tokens`, `row_tokens`), so which concatenation row
    that is depends on the task; a pair is listed once."""
    rows = {row.name: row for row in PROTOCOL_ROWS}
    pairs: list[tuple[str, str]] = []
    for token in dict.fromkeys((main, "et-fuser-spatial", "et-fuser-pooled")):
        if token not in runs or token not in rows:
            continue
        tokens = row_recipe(rows[token], task).get("prior_feature")
        concatenation = next((name for name in ("concat-mlp", "concat-mlp-pooled", "concat-mlp-grid") if name in runs
                              and row_recipe(rows[name], task).get("prior_feature") == tokens), None)
        if concatenation is not None and (token, concatenation) not in pairs:
            pairs.append((token, concatenation))
    return pairs


def token_against_concatenation(task: FaceTask, runs: Mapping[str, Sequence[RunResult]], seeds: Sequence[int],
                                token: str, concatenation: str) -> dict[str, Any]:
    """The ensemble token against concatenation over the same prior tokens, on the test split: the difference of
    means (positive: the token is better), the paired t-test across seeds and the paired test per seed."""
    token_values = [result.metrics[task.metric] for result in runs[token]]
    concatenation_values = [result.metrics[task.metric] for result in runs[concatenation]]
    return {"token_row": token, "concatenation_row": concatenation,
            **gain_over_seeds(task.greater_is_better, token_values, concatenation_values),
            "p_per_seed": [per_seed_pvalue(task, a, b, seed)
                           for a, b, seed in zip(runs[token], runs[concatenation], seeds)]}


def gain_over_seeds(greater_is_better: bool, values: Sequence[float], others: Sequence[float]) -> dict[str, Any]:
    """One row's per-seed metrics against another's: the difference of means, signed so that positive means the
    first is better (`greater_is_better`: the metric's direction), and the paired t-test across seeds."""
    sign = 1.0 if greater_is_better else -1.0
    return {"gain": round(sign * (float(np.mean(values)) - float(np.mean(others))), 4),
            "p_seeds_ttest": seed_ttest_pvalue(values, others)}


def describe_tokens(prior_feature: Mapping[str, Any] | None) -> str:
    """How et-fuser reads the priors, in words: `"pooled"` (one vector per prior), `"grid 2"` (2 x 2 tokens each), or
    per prior where their grids differ (`"grid age 3, expression 4"`)."""
    if not prior_feature:
        return "pooled"
    specs = {"": prior_feature} if "feature" in prior_feature else dict(prior_feature)
    sizes = {name: spec.get("grid_size") for name, spec in specs.items() if spec.get("feature") == "grid"}
    if len(set(sizes.values())) == 1 and len(sizes) == len(specs):
        return f"grid {next(iter(sizes.values()))}"
    return "grid " + ", ".join(f"{name} {size}" for name, size in sorted(sizes.items()))


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
    """Markdown of `task_table`: a heading naming the task, its type, the metric, the split, the tuning and the
    correction, then one line per row (the task's other metrics in columns after the headline's)."""
    metric, main = table["metric"], table["main_variant"]
    single_label = table.get("problem_type", "single_label_classification") == "single_label_classification"
    per_seed_test = "McNemar" if single_label and metric == "accuracy" else "permutation test"
    others = sum(1 for row in table["rows"] if row["variant"] != main)
    counts = ", ".join(f"{row} {count}" for row, count in (table.get("candidates_per_row") or {}).items())
    tuning = f"each row's rates chosen on validation among its candidates: {counts}" if counts else "rates not swept"
    spatial = f"; spatial rows' tokens `{table['spatial_tokens']}`" if table.get("spatial_tokens") else ""
    kind = TYPE_LABELS.get(table.get("problem_type"), "")
    kind = "" if kind == table["task"] else kind  # "landmarks (landmarks)" says nothing more
    kind = " ".join(part for part in (kind, f"({table['units']})" if table.get("units") else "") if part)
    extra = [name for name in table.get("metrics", [metric])[1:]
             if any(name in row["test"] for row in table["rows"])]
    augmented = any(row.get("augmentation") not in (None, "none") for row in table["rows"])
    lines = [
        f"### {table['task']}{f' ({kind})' if kind else ''}: test-split {METRIC_LABELS.get(metric, metric)}, "
        f"mean ± std over seeds "
        f"{', '.join(map(str, table['seeds']))} (canonical model: `{table['canonical']}`; et-fuser prior tokens "
        f"`{table.get('tokens', 'pooled')}`, fusion mode `{table.get('fusion_mode', 'add_to_pooled')}`"
        f"{spatial}; {tuning}; Holm: the t-test's p-values Holm-corrected "
        f"across the {others} rows compared with {main})",
        "",
        f"| variant | test {metric} | validation {metric} | "
        + "".join(f"test {name} | " for name in extra)
        + f"p vs {main}, t-test over seeds (test split) | "
        f"Holm-adjusted p (over {others} rows) | p vs {main}, {per_seed_test} per seed (test split) | params | "
        f"trainable | lr (canonical) | " + ("augmentation (training split) | " if augmented else "")
        + "candidates on validation | description |",
        "|---|---|---|" + "---|" * (len(extra) + augmented) + "---|---|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        t_test, holm = row.get("p_seeds_ttest_vs_main"), row.get("p_seeds_ttest_vs_main_holm")
        per_seed = row.get("p_per_seed_vs_main")
        lines.append(
            f"| {row['variant']} | {_cell(row['test'][metric])} | {_cell(row['validation'][metric])} | "
            + "".join(f"{_cell(row['test'][name]) if name in row['test'] else '—'} | " for name in extra)
            + f"{'—' if t_test is None else f'{t_test:.4f}'} | {'—' if holm is None else f'{holm:.4f}'} | "
            f"{'—' if per_seed is None else ', '.join(f'{value:.4f}' for value in per_seed)} | "
            f"{_params(row['params_total'])} | {_params(row['params_trainable'])} | "
            f"{_rate(row)} | " + (f"{row.get('augmentation') or '—'} | " if augmented else "")
            + f"{'—' if row.get('candidates') is None else row['candidates']} | "
            f"{row['description']} |")
    for pair in table.get("same_tokens") or []:
        p, per_seed = pair["p_seeds_ttest"], ", ".join(f"{value:.4f}" for value in pair["p_per_seed"])
        lines += ["", f"Same prior tokens, ensemble token against concatenation: {pair['token_row']} - "
                      f"{pair['concatenation_row']} = {'+' if pair['gain'] >= 0 else ''}{pair['gain']:.4f} {metric} "
                      f"(positive: the token is better); p = {'n/a' if p is None else f'{p:.4f}'} (t-test over seeds, "
                      f"test split), {per_seed} ({per_seed_test} per seed, test split)."]
    gates = [f"{row['variant']} {_cell(row['gate_magnitude'])}" for row in table["rows"] if row.get("gate_magnitude")]
    if gates:
        lines += ["", "Fusion gate of the selected checkpoints, mean |tanh(g)| over seeds: " + "; ".join(gates) + "."]
    agreements = [f"{row['variant']} {_cell(row['real_face_agreement'])}" for row in table["rows"]
                  if row.get("real_face_agreement")]
    if agreements:
        lines += ["", f"{REAL_FACE_AGREEMENT}, mean ± std over seeds: " + "; ".join(agreements) + "."]
    return "\n".join(lines) + "\n"


# the rows ET-Fuser is set against in a task's reading, where the table has them
COMPARED_IN_READING = ("canonical", "concat-mlp", "concat-mlp-pooled", "concat-mlp-grid", "et-fuser-spatial",
                       "et-fuser-pooled")


def reading(table: Mapping[str, Any], alpha: float = 0.05) -> str:
    """One sentence per task from its numbers: where ET-Fuser stands against the canonical model and concat-mlp."""
    metric, main = table["metric"], table["main_variant"]
    better = 1.0 if table["greater_is_better"] else -1.0
    rows = {row["variant"]: row for row in table["rows"]}
    mean = {name: row["test"][metric]["mean"] for name, row in rows.items()}
    parts = []
    for other in COMPARED_IN_READING:
        if other not in rows:
            continue
        gap = better * (mean[main] - mean[other])
        p = rows[other].get("p_seeds_ttest_vs_main")
        holm = rows[other].get("p_seeds_ttest_vs_main_holm", p)
        verdict = ("better than" if gap > 0 else "worse than" if gap < 0 else "level with")
        significant = holm is not None and holm < alpha
        parts.append(f"{verdict} {other} by {abs(mean[main] - mean[other]):.4f} {metric} "
                     f"(t-test over seeds p = {'n/a' if p is None else f'{p:.4f}'}, Holm-adjusted "
                     f"{'n/a' if holm is None else f'{holm:.4f}'}, test split"
                     f"{'' if significant else ', not significant'})")
    tokens = table.get("tokens", "pooled")
    sentence = (f"{table['task']}: ET-Fuser (prior tokens: {tokens}) is " + "; ".join(parts) + "." if parts else
                f"{table['task']}: ET-Fuser (prior tokens: {tokens}) was trained without the rows it is compared with.")
    for pair in table.get("same_tokens") or []:
        p = pair["p_seeds_ttest"]
        wins = pair["gain"] > 0 and p is not None and p < alpha
        sentence += (f" Token against concatenation over the same prior tokens, {pair['token_row']} vs "
                     f"{pair['concatenation_row']}: {'+' if pair['gain'] >= 0 else ''}{pair['gain']:.4f} {metric} "
                     f"(t-test over seeds p = {'n/a' if p is None else f'{p:.4f}'}, test split): the ensemble token "
                     f"{'beats' if wins else 'does not beat'} concatenation here.")
    gate = rows[main].get("gate_magnitude")
    if gate is not None:
        sentence += (f" Its fusion gate opened to mean |tanh(g)| = {gate['mean']:.4f} ± {gate['std']:.4f} "
                     f"(0: closed, the canonical model alone; 1: fully open).")
    agreements = {name: row["real_face_agreement"]["mean"] for name, row in rows.items() if row.get("real_face_agreement")}
    if agreements:
        sentence += (" On real faces its rows agree with the pretrained canonical network on "
                     + ", ".join(f"{value:.2f} ({name})" for name, value in agreements.items())
                     + " of 101 faces (forgetting: 1.0 would keep every reading).")
    return sentence
