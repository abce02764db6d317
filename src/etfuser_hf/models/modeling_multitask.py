"""Cross-task multi-branch ET-Fuser (after Zhu et al., arXiv 2404.14606): one model for several facial tasks, e.g.
expression and mask-wearing together.

The shared ET-Fuser features — the fusion sequence (ensemble + prior tokens) and the fused pooled vector — are the
memory every branch reads. Each task of `config.tasks` is a branch with its own learnable task token(s) and its own
layers: in every cross-task layer a branch first reads the shared memory and its own tokens (attention), then
exchanges information with the other branches (cross-attention from its tokens to theirs, the paper's cross-task
fusion), then applies its MLP. Per-task heads and losses use the shared `compute_task_loss`, weighted by each
task's `loss_weight`. `config.cross_task_attention=False` removes the exchange (independent branches, an ablation).

Labels go in as `labels={"expression": ..., "mask": ...}` or as keyword arguments `expression_labels=...`; the
latter is what the Trainer needs: `TrainingArguments(label_names=model.trainer_label_names)` (one `<task>_labels`
column per task, in `config.tasks` order, which `metrics.make_multitask_compute_metrics(config.tasks)` expects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_etfuser import ETFuserConfig
from .losses import compute_task_loss
from .modeling_auxiliary import ETFuserAuxiliaryTasks
from .modeling_etfuser import (
    ETFuserMLP,
    ETFuserModel,
    ETFuserPreTrainedModel,
    ETFuserTaskHead,
)


@dataclass
class ETFuserMultiTaskOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): weighted sum of the task losses (plus the auxiliary
            losses in training mode) given labels.
        logits (`dict[str, torch.FloatTensor]`): per task, (batch, num_labels) (landmarks: (batch, K, 2) in [0, 1]).
        task_losses (`dict[str, torch.FloatTensor]`, *optional*): each task's unweighted loss.
        task_tokens (`torch.FloatTensor` of shape `(batch, num_tasks, hidden_size)`): each branch's final token (the
            mean of its `num_task_tokens`), the input of its head.
        prior_attention (`torch.FloatTensor` of shape `(batch, num_priors)`, *optional*): as in `ETFuserModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: dict[str, torch.FloatTensor] | None = None
    task_losses: dict[str, torch.FloatTensor] | None = None
    task_tokens: torch.FloatTensor | None = None
    prior_attention: torch.FloatTensor | None = None


class ETFuserCrossAttention(nn.Module):
    """Multi-head attention from `queries` (batch, n, d) to `context` (batch, m, d), pre-norm on both sides."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.layernorm_query = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_context = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, length, width = queries.shape

        def split_heads(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.view(batch, -1, self.num_heads, width // self.num_heads).transpose(1, 2)

        context = self.layernorm_context(context)
        attended = F.scaled_dot_product_attention(
            split_heads(self.q_proj(self.layernorm_query(queries))),
            split_heads(self.k_proj(context)),
            split_heads(self.v_proj(context)),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.o_proj(attended.transpose(1, 2).reshape(batch, length, width))


class ETFuserTaskBranchLayer(nn.Module):
    """One branch's share of a cross-task layer (its own weights): read the shared memory, exchange with the other
    branches, MLP."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.read = ETFuserCrossAttention(config)
        self.exchange = ETFuserCrossAttention(config) if config.cross_task_attention else None
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ETFuserMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)


class ETFuserCrossTaskLayer(nn.Module):
    """All branches, one layer: tokens (batch, num_tasks, num_task_tokens, d) -> same shape.

    Each branch reads [shared memory; its own tokens]; then, from the tokens every branch holds after reading, each
    branch cross-attends to the other branches' tokens; then each applies its MLP."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.branches = nn.ModuleDict({name: ETFuserTaskBranchLayer(config) for name in config.tasks})

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        branches = list(self.branches.values())
        read = [
            tokens[:, index] + branch.dropout(branch.read(tokens[:, index], torch.cat([memory, tokens[:, index]], 1)))
            for index, branch in enumerate(branches)
        ]
        updated = []
        for index, branch in enumerate(branches):
            hidden = read[index]
            others = read[:index] + read[index + 1 :]
            if branch.exchange is not None and others:
                hidden = hidden + branch.dropout(branch.exchange(hidden, torch.cat(others, dim=1)))
            updated.append(hidden + branch.dropout(branch.mlp(branch.layernorm_after(hidden))))
        return torch.stack(updated, dim=1)


class ETFuserForMultiTaskFaceAnalysis(ETFuserPreTrainedModel):
    """ET-Fuser with one branch per entry of `config.tasks`, exchanging information through cross-attention.

    `config.tasks` maps a task name to `{"problem_type": "single_label_classification" | "multi_label_classification"
    | "regression" | "landmarks", "num_labels": int (or "num_landmarks" for landmarks), "loss_weight": float,
    "label_names": [...], "loss": regression/landmark loss name}`. `config.auxiliary_tasks` work as in
    `ETFuserForImageClassification` (training only, left out of inference saves).
    """

    def __init__(self, config: ETFuserConfig):
        super().__init__(config)
        if not config.tasks:
            raise ValueError("ETFuserForMultiTaskFaceAnalysis needs config.tasks (task name -> settings), e.g. "
                             "{'expression': {'problem_type': 'single_label_classification', 'num_labels': 7}}.")
        self.etfuser = ETFuserModel(config)
        self.shared_projection = nn.Linear(self.etfuser.fused_size, config.hidden_size)
        self.task_tokens = nn.Parameter(torch.zeros(1, len(config.tasks), config.num_task_tokens, config.hidden_size))
        self.cross_task_layers = nn.ModuleList([ETFuserCrossTaskLayer(config) for _ in range(config.num_task_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.heads = nn.ModuleDict({name: ETFuserTaskHead(config.hidden_size, task["num_labels"], config.classifier_dropout)
                                    for name, task in config.tasks.items()})
        self.auxiliary = ETFuserAuxiliaryTasks(config) if config.auxiliary_tasks else None
        self.post_init()

    @property
    def trainer_label_names(self) -> list[str]:
        """`TrainingArguments.label_names` for this model: `<task>_labels` in `config.tasks` order."""
        return [f"{name}_labels" for name in self.config.tasks]

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
        landmarks: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        task_token_mask: Mapping[str, float] | None = None,
        return_dict: bool | None = None,
        prior_crops: Mapping[str, torch.Tensor] | None = None,
        **task_labels: torch.Tensor,
    ) -> ETFuserMultiTaskOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch, 3, H, W)`): RGB in [0, 1].
        labels (`dict[str, torch.Tensor]`, *optional*): per task labels (see `compute_task_loss`); or pass them as
            `<task>_labels=` keyword arguments.
        landmarks (`torch.FloatTensor` of shape `(batch, 68, 2)`, *optional*): in [0, 1], used only by the
            landmark-based auxiliary tasks during training.
        task_token_mask (`dict[str, float]`, *optional*): scales a task's tokens before the cross-task layers
            (0 silences a branch's own token; used to inspect how much the branches inform each other).
        prior_crops (`dict[str, torch.FloatTensor]`, *optional*): each network's crop of `pixel_values` as
            `(batch, 2, 3)` affines (see `ETFuserModel.forward`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        labels = dict(labels or {})
        for name in self.config.tasks:
            if f"{name}_labels" in task_labels:
                labels[name] = task_labels.pop(f"{name}_labels")
        task_labels.pop("num_items_in_batch", None)
        if task_labels:
            raise ValueError(f"unexpected arguments {sorted(task_labels)}; task labels are "
                             f"{self.trainer_label_names} or labels={{task: tensor}}.")
        unknown = sorted(set(labels) - set(self.config.tasks))
        if unknown:
            raise ValueError(f"labels for unknown tasks {unknown}; the tasks are {list(self.config.tasks)}.")
        if task_token_mask is not None and set(task_token_mask) - set(self.config.tasks):
            raise ValueError(f"task_token_mask names unknown tasks {sorted(set(task_token_mask) - set(self.config.tasks))}.")

        outputs = self.etfuser(pixel_values, prior_features=prior_features, output_attentions=output_attentions,
                               return_dict=True, prior_crops=prior_crops)
        shared = self.shared_projection(outputs.pooler_output).unsqueeze(1)
        memory = shared if outputs.last_hidden_state is None else torch.cat([outputs.last_hidden_state, shared], dim=1)
        tokens = self.task_tokens.expand(memory.shape[0], -1, -1, -1)
        if task_token_mask:
            scale = torch.tensor([float(task_token_mask.get(name, 1.0)) for name in self.config.tasks],
                                 dtype=tokens.dtype, device=tokens.device)
            tokens = tokens * scale.view(1, -1, 1, 1)
        for layer in self.cross_task_layers:
            tokens = layer(tokens, memory)
        tokens = self.layernorm(tokens).mean(dim=2)  # (batch, num_tasks, d)

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
        loss = None
        if task_losses:
            loss = sum(self.config.tasks[name]["loss_weight"] * value for name, value in task_losses.items())
            if self.training and self.auxiliary is not None and pixel_values is not None:
                loss = loss + self.auxiliary.weighted_sum(self.auxiliary(self.etfuser, pixel_values, landmarks))
        output = ETFuserMultiTaskOutput(loss=loss, logits=logits, task_losses=task_losses or None,
                                        task_tokens=tokens, prior_attention=outputs.prior_attention)
        return output if return_dict else output.to_tuple()


__all__ = ["ETFuserForMultiTaskFaceAnalysis", "ETFuserMultiTaskOutput"]
