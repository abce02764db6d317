"""The comparison tables (rows, markdown), the multi-task comparison, parameter counts and the ensemble token's
mean attention per prior."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from ..models.modeling_etfuser import ETFuserPreTrainedModel
from .collators import FaceCollator
from .statistics import paired_pvalues
from .variants import VariantResult


def results_table(results: Sequence[VariantResult], main: str, labels: np.ndarray) -> list[dict[str, Any]]:
    """Rows of the comparison: metrics of each variant and its p-values against the `main` variant."""
    reference = next(result for result in results if result.name == main)
    rows = []
    for result in results:
        is_main = result.name == main
        p_bootstrap, p_mcnemar = (None, None) if is_main else paired_pvalues(reference, result, labels)
        rows.append({
            "variant": result.name,
            "description": result.description,
            "metrics": {key: round(value, 4) for key, value in result.metrics.items()},
            "p_value_vs_main": p_bootstrap,
            "mcnemar_p_vs_main": p_mcnemar,
            "test": "paired bootstrap (5000 resamples, two-sided); exact McNemar",
            "train_seconds": round(result.seconds, 1),
        })
    return rows


def render_results_markdown(rows: Sequence[Mapping[str, Any]], main: str) -> str:
    lines = [f"| variant | accuracy | macro-F1 | p (bootstrap) vs {main} | p (McNemar) vs {main} | description |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        p_boot = "—" if row["p_value_vs_main"] is None else f"{row['p_value_vs_main']:.4f}"
        p_mcnemar = "—" if row["mcnemar_p_vs_main"] is None else f"{row['mcnemar_p_vs_main']:.4f}"
        lines.append(f"| {row['variant']} | {row['metrics']['accuracy']:.4f} | {row['metrics']['macro_f1']:.4f} | "
                     f"{p_boot} | {p_mcnemar} | {row['description']} |")
    return "\n".join(lines) + "\n"


def multitask_comparison(
    single_task: Mapping[str, VariantResult],
    multi_task: Mapping[str, VariantResult],
    labels: Mapping[str, np.ndarray],
    single_task_params: Sequence[Mapping[str, int]],
    multi_task_params: Mapping[str, int],
) -> dict[str, Any]:
    """One multi-task model against one single-task model per task: per task both metrics and the p-values of the
    multi-task branch against the single-task model; parameters of the multi-task model against the single-task
    models together (`count_parameters` of each)."""
    rows = []
    for task, reference in single_task.items():
        p_bootstrap, p_mcnemar = paired_pvalues(reference, multi_task[task], labels[task])
        rows.append({
            "task": task,
            "single_task": {key: round(value, 4) for key, value in reference.metrics.items()},
            "multi_task": {key: round(value, 4) for key, value in multi_task[task].metrics.items()},
            "p_value": p_bootstrap,
            "mcnemar_p": p_mcnemar,
        })
    separate = {key: sum(params[key] for params in single_task_params) for key in ("params_total", "params_trainable")}
    return {"tasks": rows, "params": {"multi_task": {key: multi_task_params[key] for key in separate},
                                      "single_task_models": separate}}


def render_multitask_markdown(comparison: Mapping[str, Any]) -> str:
    lines = ["| task | single-task accuracy | multi-task accuracy | single-task macro-F1 | multi-task macro-F1 | "
             "p (bootstrap) | p (McNemar) |", "|---|---|---|---|---|---|---|"]
    for row in comparison["tasks"]:
        lines.append(f"| {row['task']} | {row['single_task']['accuracy']:.4f} | {row['multi_task']['accuracy']:.4f} | "
                     f"{row['single_task']['macro_f1']:.4f} | {row['multi_task']['macro_f1']:.4f} | "
                     f"{row['p_value']:.4f} | {row['mcnemar_p']:.4f} |")
    params = comparison["params"]
    lines += ["", "| parameters | one multi-task model | single-task models together |", "|---|---|---|"]
    for key, label in (("params_total", "total"), ("params_trainable", "trainable")):
        lines.append(f"| {label} | {params['multi_task'][key]:,} | {params['single_task_models'][key]:,} |")
    return "\n".join(lines) + "\n"


def count_parameters(model: ETFuserPreTrainedModel) -> dict[str, int]:
    base = model.base_model
    total = sum(p.numel() for p in model.parameters())
    encoders = sum(p.numel() for p in base.priors.parameters())
    encoders += sum(p.numel() for p in base.backbone.parameters()) if base.backbone is not None else 0
    head = total - sum(p.numel() for p in base.parameters())
    return {"params_total": total, "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "params_fusion": total - encoders - head}


def mean_prior_attention(model: ETFuserPreTrainedModel, dataset: datasets.Dataset, collator: FaceCollator,
                         batch_size: int = 64) -> dict[str, float]:
    """The ensemble token's attention per prior (last fusion layer), averaged over `dataset`."""
    model.eval()
    totals, count = None, 0
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        batch.pop("labels")
        with torch.inference_mode():
            attention = model(**batch, output_attentions=True).prior_attention
        totals = attention.sum(0) if totals is None else totals + attention.sum(0)
        count += attention.shape[0]
    return {name: round(float(value) / count, 4) for name, value in zip(model.config.priors, totals)}
