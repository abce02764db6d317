"""Cross-task multi-branch ET-Fuser (after Zhu et al., arXiv 2404.14606): one model for several facial tasks, e.g.
expression and mask-wearing together.

The shared ET-Fuser features (fusion sequence + fused pooled vector) are the memory every branch reads. Each task
(`config.tasks`) keeps its own learnable task token; in every cross-task layer a task token cross-attends to the
shared memory and to the other tasks' tokens — the information exchange between branches — then goes through an
MLP. Per-task heads and losses use the shared `compute_task_loss`, weighted by each task's `loss_weight`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_etfuser import ETFuserConfig
from .modeling_etfuser import (
    ETFuserMLP,
    ETFuserModel,
    ETFuserPreTrainedModel,
    ETFuserTaskHead,
    compute_task_loss,
)


@dataclass
class ETFuserMultiTaskOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): weighted sum of the task losses given labels.
        logits (`dict[str, torch.FloatTensor]`): per task, (batch, num_labels) (landmarks: (batch, K, 2) in [0, 1]).
        task_losses (`dict[str, torch.FloatTensor]`, *optional*): each task's unweighted loss.
        task_tokens (`torch.FloatTensor` of shape `(batch, num_tasks, hidden_size)`): the branches' final tokens.
        prior_attention (`torch.FloatTensor` of shape `(batch, num_priors)`, *optional*): as in `ETFuserModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: dict[str, torch.FloatTensor] | None = None
    task_losses: dict[str, torch.FloatTensor] | None = None
    task_tokens: torch.FloatTensor | None = None
    prior_attention: torch.FloatTensor | None = None


class CrossTaskLayer(nn.Module):
    """Task tokens (batch, T, d) attend to [shared memory; all task tokens] (cross-attention), then an MLP."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.layernorm_query = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_context = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ETFuserMLP(config)

    def forward(self, task_tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        batch, num_tasks, width = task_tokens.shape
        context = self.layernorm_context(torch.cat([memory, task_tokens], dim=1))

        def heads(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.view(batch, -1, self.num_heads, width // self.num_heads).transpose(1, 2)

        query = heads(self.q_proj(self.layernorm_query(task_tokens)))
        attended = F.scaled_dot_product_attention(query, heads(self.k_proj(context)), heads(self.v_proj(context)))
        task_tokens = task_tokens + self.o_proj(attended.transpose(1, 2).reshape(batch, num_tasks, width))
        return task_tokens + self.mlp(self.layernorm_after(task_tokens))


class ETFuserForMultiTaskFaceAnalysis(ETFuserPreTrainedModel):
    """ET-Fuser with one branch per entry of `config.tasks`, exchanging information through cross-attention.

    Labels: `labels={"expression": ..., "mask": ...}` or keyword arguments `expression_labels=...`,
    `mask_labels=...` (use the latter with the Trainer: `TrainingArguments(label_names=["expression_labels", ...])`).
    """

    def __init__(self, config: ETFuserConfig):
        super().__init__(config)
        if not config.tasks:
            raise ValueError("ETFuserForMultiTaskFaceAnalysis needs config.tasks (task name -> settings).")
        self.etfuser = ETFuserModel(config)
        self.shared_projection = nn.Linear(self.etfuser.fused_size, config.hidden_size)
        self.task_tokens = nn.Parameter(torch.zeros(1, len(config.tasks), config.hidden_size))
        self.cross_task_layers = nn.ModuleList([CrossTaskLayer(config) for _ in range(config.num_task_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.heads = nn.ModuleDict({name: ETFuserTaskHead(config.hidden_size, task["num_labels"], config.classifier_dropout)
                                    for name, task in config.tasks.items()})
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ETFuserForMultiTaskFaceAnalysis):
            init.trunc_normal_(module.task_tokens, std=self.config.initializer_range)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: Mapping[str, torch.Tensor] | None = None,
        prior_features: Mapping[str, torch.Tensor] | None = None,
        output_attentions: bool | None = None,
        task_token_mask: Mapping[str, float] | None = None,
        return_dict: bool | None = None,
        **task_labels: Any,
    ) -> ETFuserMultiTaskOutput | tuple:
        r"""
        labels (`dict[str, torch.Tensor]`, *optional*): per task labels (see `compute_task_loss`).
        task_token_mask (`dict[str, float]`, *optional*): scales a task's token before the cross-task layers
            (0 silences a branch; used to inspect how much the branches inform each other).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        labels = dict(labels or {})
        for name in self.config.tasks:
            if f"{name}_labels" in task_labels:
                labels[name] = task_labels.pop(f"{name}_labels")
        unknown = sorted(set(labels) - set(self.config.tasks))
        if unknown:
            raise ValueError(f"labels for unknown tasks {unknown}; the tasks are {list(self.config.tasks)}.")
        outputs = self.etfuser(pixel_values, prior_features=prior_features, output_attentions=output_attentions,
                               return_dict=True)
        shared = self.shared_projection(outputs.pooler_output).unsqueeze(1)
        memory = shared if outputs.last_hidden_state is None else torch.cat([outputs.last_hidden_state, shared], dim=1)
        tokens = self.task_tokens.expand(memory.shape[0], -1, -1)
        if task_token_mask:
            scale = torch.tensor([float(task_token_mask.get(name, 1.0)) for name in self.config.tasks],
                                 dtype=tokens.dtype, device=tokens.device)
            tokens = tokens * scale.view(1, -1, 1)
        for layer in self.cross_task_layers:
            tokens = layer(tokens, memory)
        tokens = self.layernorm(tokens)

        logits, task_losses = {}, {}
        for index, (name, task) in enumerate(self.config.tasks.items()):
            output = self.heads[name](tokens[:, index])
            if task["problem_type"] == "landmarks":
                output = torch.sigmoid(output).view(-1, task["num_landmarks"], 2)
            logits[name] = output
            if name in labels:
                problem_type = task["problem_type"]
                task_losses[name] = compute_task_loss(output, labels[name].to(output.device), problem_type,
                                                      task.get("loss", "l1" if problem_type == "landmarks" else "mse"))
        loss = sum(self.config.tasks[name]["loss_weight"] * value for name, value in task_losses.items()) \
            if task_losses else None
        output = ETFuserMultiTaskOutput(loss=loss, logits=logits, task_losses=task_losses or None,
                                        task_tokens=tokens, prior_attention=outputs.prior_attention)
        return output if return_dict else output.to_tuple()


__all__ = ["ETFuserForMultiTaskFaceAnalysis", "ETFuserMultiTaskOutput"]
