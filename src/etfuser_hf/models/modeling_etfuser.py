"""PyTorch ET-Fuser: frozen task priors -> projected prior tokens -> ensemble-token self-attention -> fusion into a
trainable task backbone -> task heads.

Reading order: outputs, fusion embeddings, fusion layers, the pretrained base, the base model and the task heads.
Beside it: how each `fusion_mode` builds and fuses (fusion_modes.py), the encoders' input views and feature selection
(encoders.py), the eager input checks (input_checks.py) and the heads' shared loss (losses.py).
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import WeightRenaming, rename_source_key
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_etfuser import PRIOR_SUB_CONFIG_SUFFIX, EncoderSpec, ETFuserConfig
from .encoders import (
    build_encoder,
    grid_tokens,
    load_pretrained_encoder,
    pool_tokens,
    prepare_encoder_inputs,
    select_feature_tokens,
    supported_attn_implementation,
)
from .fusion_modes import POOLED_FUSION_MODES
from .input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX, check_inputs, check_prior_crops
from .losses import compute_task_loss, infer_problem_type, normalized_mean_error
from .modeling_auxiliary import ETFuserAuxiliaryTasks

logger = logging.get_logger(__name__)

# Backbones whose embedding module returns a (batch, tokens, width) sequence that every layer attends over,
# so extra ensemble tokens can be inserted after the CLS token.
TOKEN_SEQUENCE_BACKBONES = (
    "vit",
    "deit",
    "dinov2",
    "dinov2_with_registers",
    "clip_vision_model",
    "siglip_vision_model",
    "vit_msn",
)

# (the backbone embedding module, the ensemble tokens (batch, E, D_backbone) to insert after its CLS token) of the
# forward running in this thread / async context, or None. A context variable, not an attribute or a per-call hook:
# threads that share one model each insert their own tokens (transformers' output capture works the same way). One
# hook on the embeddings, registered once, rather than calling each backbone's embeddings and encoder ourselves: the
# backbones above end their forwards differently (pre/post norms, poolers, SigLIP's attention head). A plain
# ContextVar, not transformers' CompileableContextVar: that class belongs to output capture, whose common test
# (test_capture_outputs_decorator) counts every value set on it as captured outputs.
_BACKBONE_ENSEMBLE_TOKENS: contextvars.ContextVar = contextvars.ContextVar("etfuser_backbone_ensemble_tokens",
                                                                           default=None)


def _insert_ensemble_tokens(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
    """Forward hook of a `prepend_token` backbone's embedding module, registered once: inserts the current call's
    ensemble tokens after the CLS token of its (batch, L, D) output; a no-op outside `ETFuserModel._run_backbone`.
    Module-level, so copies and pickles of the model carry it without a reference to the model."""
    current = _BACKBONE_ENSEMBLE_TOKENS.get()
    if current is None or current[0] is not module:
        return None
    if not isinstance(output, torch.Tensor) or output.dim() != 3:
        raise ValueError("fusion_mode='prepend_token': the backbone embeddings did not return (batch, L, D).")
    tokens = current[1]
    return torch.cat([output[:, :1], tokens.to(output.dtype), output[:, 1:]], dim=1)


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class ETFuserModelOutput(ModelOutput):
    """
    Output of `ETFuserModel`. Fusion side: the fusion module's sequence (`last_hidden_state`, `hidden_states`,
    `attentions`) and the ensemble tokens it produces. Prior side: `prior_tokens`, each prior's selected feature tokens
    projected to the fusion width; the priors' own layer-by-layer hidden states are not part of this output (they are
    frozen sub-models: call `model.priors[name](pixel_values=..., output_hidden_states=True)` on the view that
    `prepare_encoder_inputs` gives it, or read `extract_prior_features` for the tokens the fusion module reads).

    With `return_dict=False` the output is the tuple of the fields below that are not None, in this order (e.g.
    `(last_hidden_state, pooler_output, ensemble_tokens, prior_tokens)` by default, `hidden_states` next with
    `output_hidden_states`; `fusion_mode="none"` gives `(pooler_output,)`).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, num_ensemble_tokens + num_prior_tokens, hidden_size)`):
            Output sequence of the fusion module (ensemble tokens first; under `fusion_mode="canonical_tokens"` the
            canonical model's `canonical_grid_size`² tokens last); only the ensemble tokens `(batch,
            num_ensemble_tokens, hidden_size)` with `ensemble_tokens_only`. None for `fusion_mode="none"`.
        pooler_output (`torch.FloatTensor` of shape `(batch, fused_size)`):
            The fused representation the task heads read.
        ensemble_tokens (`torch.FloatTensor` of shape `(batch, num_ensemble_tokens, hidden_size)`):
            The ensemble token(s) after fusion.
        prior_tokens (`torch.FloatTensor` of shape `(batch, num_prior_tokens, hidden_size)`):
            The projected prior tokens before fusion, in `config.priors` order.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states`):
            fusion side, `num_hidden_layers + 1` tensors of shape `(batch, num_ensemble_tokens + num_prior_tokens,
            hidden_size)`: the fusion input (ensemble tokens + projected prior tokens) and each fusion layer's output
            (the last one before the final LayerNorm that gives `last_hidden_state`). With a list of indices,
            unselected positions are None. None where there is no fusion module (`"none"`, `"concat_priors"`).
            With `config.read_only_priors` every position after the ensemble tokens is the fusion input's, unchanged.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions`): each fusion layer's
            attention weights `(batch, heads, L, L)` (computed eagerly for that call, whatever the implementation);
            `(batch, heads, num_ensemble_tokens, L)` with `config.read_only_priors`, where only the ensemble tokens
            are queries. Either way the first `num_ensemble_tokens` rows are the ensemble tokens' attention.
        prior_attention (`torch.FloatTensor` of shape `(batch, num_priors)`, *optional*):
            Share of the ensemble tokens' last-layer attention given to each prior's tokens (averaged over heads and
            ensemble tokens, renormalised over priors). Returned with `output_attentions=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    ensemble_tokens: torch.FloatTensor | None = None
    prior_tokens: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    prior_attention: torch.FloatTensor | None = None


@dataclass
class ETFuserImageClassifierOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): task loss, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`): class scores (before softmax/sigmoid), or the
            regression output (with `config.regression_bins`: `(batch, 1)`, the expectation over the bins).
        hidden_states / attentions / prior_attention: as in `ETFuserModelOutput` (fusion side).

    With `return_dict=False`: the non-None fields in this order, `(loss, logits, hidden_states, attentions,
    prior_attention)`, e.g. `(logits,)` without labels and output flags.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    prior_attention: torch.FloatTensor | None = None


@dataclass
class ETFuserLandmarkOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): landmark loss, when `labels` are given.
        landmarks (`torch.FloatTensor` of shape `(batch, num_landmarks, 2)`): (x, y) in [0, 1] image coordinates.
        nme (`torch.FloatTensor` of shape `(batch,)`, *optional*): per-image inter-ocular normalised mean error, when
            `labels` are given.
        hidden_states / attentions / prior_attention: as in `ETFuserModelOutput` (fusion side).

    With `return_dict=False`: the non-None fields in this order, `(loss, landmarks, nme, hidden_states, attentions,
    prior_attention)`.
    """

    loss: torch.FloatTensor | None = None
    landmarks: torch.FloatTensor | None = None
    nme: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    prior_attention: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Fusion embeddings: ensemble tokens + one projection per prior
# ----------------------------------------------------------------------------------------------------------------------


class ETFuserGridPositionEmbedding(nn.Module):
    """Learned 2-D position embedding of a grid_size x grid_size token grid: a row part plus a column part, (1,
    grid_size**2, hidden_size) in the row-major order of `encoders.grid_tokens`."""

    def __init__(self, grid_size: int, hidden_size: int):
        super().__init__()
        self.grid_size = grid_size
        self.rows = nn.Parameter(torch.zeros(grid_size, 1, hidden_size))
        self.columns = nn.Parameter(torch.zeros(1, grid_size, hidden_size))

    def forward(self) -> torch.Tensor:
        return (self.rows + self.columns).reshape(1, self.grid_size * self.grid_size, -1)


class ETFuserPriorProjection(nn.Module):
    """Projects one encoder's feature tokens (batch, n, feature_dim) to the fusion width (batch, n, hidden_size) and
    tags them with a learned per-encoder embedding, so the fusion layers know which prior a token came from; grid
    tokens (`grid_size`) also get a 2-D position embedding, so they know where in the face it lies."""

    def __init__(self, feature_dim: int, num_tokens: int, config: ETFuserConfig, grid_size: int | None = None):
        super().__init__()
        self.dense = nn.Linear(feature_dim, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.prior_embedding = nn.Parameter(torch.zeros(1, num_tokens, config.hidden_size))
        self.position_embedding = ETFuserGridPositionEmbedding(grid_size, config.hidden_size) if grid_size else None

    @classmethod
    def for_spec(cls, spec: EncoderSpec, config: ETFuserConfig) -> ETFuserPriorProjection:
        """The projection of a prior's selected tokens; a grid prior's one embedding is shared by its cells."""
        if spec.feature == "grid":
            return cls(spec.feature_dim, 1, config, grid_size=spec.grid_size)
        return cls(spec.feature_dim, spec.num_output_tokens, config)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        tokens = self.layernorm(self.dense(features.to(self.dense.weight.dtype)))
        # the per-prior and the position embedding summed first (n tokens), then added once to the batch
        embedding = self.prior_embedding if self.position_embedding is None else (
            self.prior_embedding + self.position_embedding())
        return tokens + embedding


class ETFuserEmbeddings(nn.Module):
    """Builds the fusion sequence: the learnable ensemble token(s), every prior's projected tokens and, under
    `fusion_mode="canonical_tokens"`, the canonical model's own grid tokens last."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.ensemble_tokens = nn.Parameter(torch.zeros(1, config.num_ensemble_tokens, config.hidden_size))
        self.projections = nn.ModuleDict(
            {name: ETFuserPriorProjection.for_spec(spec, config) for name, spec in config.priors.items()}
        )
        self.canonical_projection = None
        if config.fusion_properties.canonical_tokens:
            self.canonical_projection = ETFuserPriorProjection(config.backbone.feature_dim, 1, config,
                                                               grid_size=config.canonical_grid_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, prior_features: Mapping[str, torch.Tensor], batch_size: int,
                canonical_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the fusion sequence (batch, E + T (+ C), hidden_size) and the projected prior tokens (batch, T, d);
        `canonical_features` (batch, C, backbone feature_dim) are the canonical model's grid tokens."""
        ensemble = self.ensemble_tokens.expand(batch_size, -1, -1)
        sequence = [ensemble] + [projection(prior_features[name]) for name, projection in self.projections.items()]
        num_prior_tokens = sum(tokens.shape[1] for tokens in sequence[1:])
        if self.canonical_projection is not None:
            sequence.append(self.canonical_projection(canonical_features))
        # one concatenation (the prior tokens are a view of it): every copy of the sequence is paid per step
        sequence = torch.cat(sequence, dim=1)
        start = ensemble.shape[1]
        return _dropout(self.dropout, sequence), sequence[:, start:start + num_prior_tokens]


def _dropout(dropout: nn.Dropout, hidden_states: torch.Tensor) -> torch.Tensor:
    """`dropout(hidden_states)`, without the call where it is the identity (p = 0, or eval mode): a training step
    calls a dropout module at every residual."""
    return dropout(hidden_states) if dropout.p and dropout.training else hidden_states


def token_groups(config: ETFuserConfig) -> list[int]:
    """Group id of every fusion token: 0 for ensemble tokens, p (1-based, `config.priors` order) for prior p, and
    num_priors + 1 for the canonical model's tokens (`fusion_mode="canonical_tokens"`)."""
    groups = [0] * config.num_ensemble_tokens
    for index, spec in enumerate(config.priors.values(), start=1):
        groups += [index] * spec.num_output_tokens
    if config.fusion_properties.canonical_tokens:
        groups += [len(config.priors) + 1] * config.canonical_grid_size**2
    return groups


def fusion_attention_mask(config: ETFuserConfig, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """Additive mask (1, 1, L, L) implementing `config.attention_mask_strategy` (None for `"full"`).

    Ensemble tokens always read every token. Under `"ensemble_reads_priors"` a prior token reads its own prior and the
    ensemble tokens; under `"isolated"` only its own prior.
    """
    if config.attention_mask_strategy == "full":
        return None
    groups = torch.tensor(token_groups(config), device=device)
    query, key = groups.view(-1, 1), groups.view(1, -1)
    allowed = (query == 0) | (query == key)
    if config.attention_mask_strategy == "ensemble_reads_priors":
        allowed = allowed | (key == 0)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


# ----------------------------------------------------------------------------------------------------------------------
# Fusion layers
# ----------------------------------------------------------------------------------------------------------------------


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention on (batch, heads, L, head_dim) tensors; returns (batch, L, heads, head_dim) and weights."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    # softmax in the scores' own dtype: reduced-precision inputs are accumulated in float32 inside the kernel and the
    # probabilities rounded once, as a float32 softmax cast back would give, without a float32 copy of the (L, L)
    # scores and of their gradient
    weights = torch.softmax(weights, dim=-1)
    if dropout and module.training:
        weights = F.dropout(weights, p=dropout, training=True)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


# From this many fusion tokens on, the full stack's last layer under `ensemble_tokens_only` (whose only queries are the
# ensemble tokens) folds the key and value projections into them (`ETFuserAttention._read_only_forward`); below it,
# projecting every token costs less than the folding's own extra operations (one layer's forward and backward on CPU,
# bf16, batch 32: 1.6 / 1.8 ms at 4 tokens, 2.9 / 2.6 ms at 30, 3.5 / 2.7 ms at 49). Either way the same function.
# `read_only_priors` folds every layer at any length, as it always has (its FLOPs are what it is chosen for).
FOLDED_ATTENTION_MIN_TOKENS = 16


class ETFuserAttention(nn.Module):
    """Multi-head self-attention over the fusion sequence, dispatched to SDPA or eager by `config._attn_implementation`."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        num_queries: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, L, hidden_size) -> (batch, Q, hidden_size) and the weights (batch, heads, Q, L) when asked for; Q
        is L, or `num_queries` when only the first positions (the ensemble tokens) attend."""
        if num_queries is not None and (self.config.read_only_priors or (
                attention_mask is None and hidden_states.shape[1] >= FOLDED_ATTENTION_MIN_TOKENS)):
            return self._read_only_forward(hidden_states, output_attentions, num_queries)
        width = hidden_states.shape[-1]
        if num_queries is None:  # q, k and v of every token in one product: one pass over the tokens, not three
            query, key, value = _joint_linear(hidden_states, self.q_proj, self.k_proj, self.v_proj).split(width, -1)
        else:
            query = self.q_proj(hidden_states[:, :num_queries])
            key, value = _joint_linear(hidden_states, self.k_proj, self.v_proj).split(width, -1)
        query_shape = query.shape[:-1]
        query = query.view(*query_shape, -1, self.head_dim).transpose(1, 2)
        key_value_shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        key = key.view(key_value_shape).transpose(1, 2)
        value = value.view(key_value_shape).transpose(1, 2)
        if attention_mask is not None and num_queries is not None:
            attention_mask = attention_mask[:, :, :num_queries]

        # attention weights only exist on the eager path, so asking for them selects it for this call
        implementation = "eager" if output_attentions else self.config._attn_implementation
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        if attention_mask is not None and attention_mask.dtype != query.dtype:  # autocast changes q/k/v dtype
            attention_mask = attention_mask.to(query.dtype)
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
        )
        return self.o_proj(output.reshape(*query_shape, -1).contiguous()), weights

    def _read_only_forward(self, hidden_states: torch.Tensor, output_attentions: bool, num_queries: int
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward` where only the first `num_queries` positions (the ensemble tokens) are queries, with the key and
        value projections folded into those few queries: the same function, in another order of operations. Used
        for `config.read_only_priors` and for the last layer under `ensemble_tokens_only`. Head h's score of token x
        is q_h . (K_h x + b_h) = (K_h^T q_h) . x + q_h . b_h, and its output sum_j a_j (V_h x_j + c_h) = V_h (sum_j
        a_j x_j) + c_h sum_j a_j (exact under attention dropout too, where the a_j need not sum to 1). So each of the
        L keys costs heads x hidden_size multiply-adds instead of two hidden_size^2 projections: with grid priors
        (tens of tokens) and one ensemble token, the projections of every token were most of the fusion's cost. The
        tokens are read as they are (no copy with a column of ones, no per-head copies): the folded queries of every
        head are rows of one product with them. Shapes as in `forward`, Q = `num_queries`."""
        batch, length, width = hidden_states.shape
        heads = width // self.head_dim
        query = self.q_proj(hidden_states[:, :num_queries]).view(batch, num_queries, heads, self.head_dim)
        key_weight, key_bias = _head_weights(self.k_proj, heads, self.head_dim)  # (heads, head_dim, width + 1)
        # [K_h^T q_h, q_h . b_h] for every head and query: (batch, heads x Q, width + 1); the scaling stays head_dim^-0.5
        folded = torch.einsum("bqhd,hdk->bhqk", query, torch.cat([key_weight, key_bias], dim=-1))
        folded = folded.reshape(batch, heads * num_queries, width + 1)
        tokens = hidden_states.to(folded.dtype)  # once: both products below read them (autocast would cast twice)
        scores = torch.baddbmm(folded[..., width:], folded[..., :width], tokens.transpose(1, 2))
        weights = torch.softmax(scores * self.scaling, dim=-1)  # (batch, heads x Q, L)
        if self.attention_dropout and self.training:
            weights = F.dropout(weights, p=self.attention_dropout, training=True)
        # [sum_j a_j x_j, sum_j a_j] -> each head's value [V_h, c_h] [.], then the output projection over the heads
        mixed = torch.cat([torch.bmm(weights, tokens), weights.sum(dim=-1, keepdim=True)], dim=-1)
        value_weight, value_bias = _head_weights(self.v_proj, heads, self.head_dim)
        values = torch.einsum("bhqk,hdk->bqhd", mixed.view(batch, heads, num_queries, width + 1),
                              torch.cat([value_weight, value_bias], dim=-1))
        weights = weights.view(batch, heads, num_queries, length) if output_attentions else None
        return self.o_proj(values.reshape(batch, num_queries, width)), weights


def _joint_linear(hidden_states: torch.Tensor, *projections: nn.Linear) -> torch.Tensor:
    """`torch.cat([projection(hidden_states) for projection in projections], -1)` as one product with the weights
    side by side (the same values: each output is the same dot product), for projections that all have a bias or
    all have none (`config.qkv_bias`). Under autocast the tokens are cast once, not once per projection, and the
    backward sums their gradient in the product rather than in separate passes over the tokens."""
    weight = torch.cat([projection.weight for projection in projections])
    bias = None if projections[0].bias is None else torch.cat([projection.bias for projection in projections])
    return F.linear(hidden_states, weight, bias)


def _head_weights(projection: nn.Linear, heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (heads x head_dim, width) projection's weight per head (heads, head_dim, width) and its bias (heads, head_dim,
    1), zeros without one (`config.qkv_bias=False`)."""
    weight = projection.weight.view(heads, head_dim, -1)
    if projection.bias is None:
        return weight, weight.new_zeros(heads, head_dim, 1)
    return weight, projection.bias.view(heads, head_dim, 1)


class ETFuserMLP(nn.Module):
    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class ETFuserLayer(GradientCheckpointingLayer):
    """Pre-norm transformer layer of the fusion module."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = ETFuserAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ETFuserMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        num_queries: int | None = None,
        keep_context: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, L, hidden_size) -> (batch, L, hidden_size), or only the first `num_queries` positions updated
        (batch, num_queries, hidden_size): they read every position. With `keep_context` the other positions follow
        them unchanged, (batch, L, hidden_size), as keys and values for the next layer (`read_only_priors`)."""
        attended, weights = self.attention(self.layernorm_before(hidden_states), attention_mask, output_attentions,
                                           num_queries)
        context = None
        if num_queries is not None:
            hidden_states, context = hidden_states[:, :num_queries], hidden_states[:, num_queries:]
        hidden_states = hidden_states + _dropout(self.dropout, attended)
        hidden_states = hidden_states + _dropout(self.dropout, self.mlp(self.layernorm_after(hidden_states)))
        if keep_context and context is not None:
            hidden_states = torch.cat([hidden_states, context], dim=1)
        return hidden_states, weights


class ETFuserFusion(nn.Module):
    """The self-attention stack in which the ensemble token(s) gather the priors' mutual information."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList([ETFuserLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, ensemble_tokens_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, L, hidden_size) -> the normed output sequence (batch, L, hidden_size) and the last layer's attention
        weights (batch, heads, Q, L) when `output_attentions` (for `prior_attention`): Q is L, or num_ensemble_tokens
        with `config.read_only_priors`. Every layer's output and weights reach `output_hidden_states` /
        `output_attentions` through transformers' output-capture hooks.

        `config.read_only_priors`: every layer updates only the ensemble tokens, which read the whole sequence; the
        other positions go through unchanged (and no mask applies: ensemble tokens read everything under every
        strategy). `ensemble_tokens_only`: the last layer updates only the ensemble tokens, which read the whole
        sequence as before, and the output is (batch, num_ensemble_tokens, hidden_size): the same ensemble tokens,
        without the prior positions' last attention and MLP that nothing downstream of a task head reads."""
        read_only = self.config.read_only_priors
        attention_mask = None if read_only else fusion_attention_mask(self.config, hidden_states.dtype,
                                                                      hidden_states.device)
        weights = None
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            drops_context = ensemble_tokens_only and index == last
            num_queries = self.config.num_ensemble_tokens if read_only or drops_context else None
            hidden_states, weights = layer(hidden_states, attention_mask, output_attentions, num_queries,
                                           read_only and not drops_context)
        return self.layernorm(hidden_states), weights


def attention_over_priors(attention: torch.Tensor, config: ETFuserConfig) -> torch.Tensor:
    """(batch, heads, Q, L) fusion attention, the ensemble tokens' rows first (Q is L, or num_ensemble_tokens with
    `read_only_priors`) -> (batch, num_priors) share of the ensemble tokens' attention per prior."""
    groups = token_groups(config)
    ensemble_rows = attention[:, :, : config.num_ensemble_tokens].mean(dim=(1, 2))  # (batch, L)
    membership = torch.tensor(
        [[float(group == prior) for group in groups] for prior in range(1, len(config.priors) + 1)],
        dtype=ensemble_rows.dtype,
        device=ensemble_rows.device,
    )  # (P, L)
    per_prior = ensemble_rows @ membership.T
    return per_prior / per_prior.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(per_prior.dtype).tiny)


# ----------------------------------------------------------------------------------------------------------------------
# Pretrained base
# ----------------------------------------------------------------------------------------------------------------------


def runtime_key_names(model: PreTrainedModel, state_dict: Mapping[str, Any], own: set[str]) -> dict[str, Any]:
    """Renames checkpoint-format keys (as `save_pretrained` writes them) to the module names of `model`, with the
    library's own key renamings for its nested encoders; keys the model already names, or no renaming reaches, stay."""
    renamings = [c for c in get_model_conversion_mapping(model, add_legacy=False) if isinstance(c, WeightRenaming)]
    renamed = {}
    for key, value in state_dict.items():
        target = key if key in own else rename_source_key(key, renamings, [])[0]
        renamed[target if target in own else key] = value
    return renamed


class ETFuserPreTrainedModel(PreTrainedModel):
    config: ETFuserConfig
    config_class = ETFuserConfig
    base_model_prefix = "etfuser"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ETFuserLayer"]
    _supports_sdpa = True
    # What `output_hidden_states` / `output_attentions` capture (transformers' output-capture hooks, installed on first
    # use): the fusion layers' outputs (after the fusion input, as the initial hidden state) and attention weights. The
    # priors and the backbone are sub-models with their own `_can_record_outputs`: called directly, they capture theirs.
    _can_record_outputs = {"hidden_states": ETFuserLayer, "attentions": OutputRecorder(ETFuserAttention, index=1)}
    # Every head returns its loss as a mean over the batch: the Trainer must neither pass `num_items_in_batch` (which
    # `**kwargs` would take) nor rescale the loss for it (times the number of processes under data parallelism).
    accepts_loss_kwargs = False

    # Every Auto class that can read any ET-Fuser folder; save_pretrained alone records only the saving class's one.
    _base_auto_map = {
        "AutoConfig": "configuration_etfuser.ETFuserConfig",
        "AutoModel": "modeling_etfuser.ETFuserModel",
        "AutoModelForImageClassification": "modeling_etfuser.ETFuserForImageClassification",
    }

    def save_pretrained(
        self, save_directory: str | os.PathLike, *args: Any, include_auxiliary: bool = False, **kwargs: Any
    ) -> None:
        """`save_pretrained` of transformers; training-only auxiliary heads (`config.auxiliary_tasks`) are left out of
        the inference folder unless `include_auxiliary=True` (Trainer checkpoints pass their own full state_dict)."""
        self.config.auto_map = {**self._base_auto_map, **(getattr(self.config, "auto_map", None) or {})}
        # Keys are written in the library's checkpoint format: nested encoders through their conversion mapping (a ViT
        # prior's layers as `encoder.layer.N.attention.attention.query`, as a ViT checkpoint names them), which
        # `from_pretrained` maps back and `load_state_dict` below accepts too.
        auxiliary_tasks = self.config.auxiliary_tasks
        if auxiliary_tasks and not include_auxiliary and "state_dict" not in kwargs:
            kwargs["state_dict"] = {k: v for k, v in self.state_dict().items() if not k.startswith("auxiliary.")}
            self.config.auxiliary_tasks = {}
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.config.auxiliary_tasks = auxiliary_tasks

    def set_attn_implementation(self, attn_implementation: str | dict, allow_all_kernels: bool = False) -> None:
        """`set_attn_implementation` of transformers: a `str` reaches the fusion module (key `""`), the backbone
        (`"backbone_config"`) and every prior (`"<name>_prior_config"`); an encoder class without SDPA (no attention
        layers) stays "eager" when "sdpa" is asked for. A `dict` targets the keys it names, as in transformers."""
        if isinstance(attn_implementation, str):
            base = self.base_model
            encoders = {f"{name}{PRIOR_SUB_CONFIG_SUFFIX}": prior for name, prior in base.priors.items()}
            if base.backbone is not None:
                encoders["backbone_config"] = base.backbone
            attn_implementation = {"": attn_implementation, **{
                key: supported_attn_implementation(type(encoder), attn_implementation)
                for key, encoder in encoders.items()}}
        super().set_attn_implementation(attn_implementation, allow_all_kernels=allow_all_kernels)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """`nn.Module.load_state_dict`, that also takes a state dict with the saved (checkpoint-format) names of
        `save_pretrained`: the Trainer resumes and restores its best model with this plain call, not `from_pretrained`."""
        own = set(self.state_dict().keys())
        if any(key not in own for key in state_dict):
            state_dict = runtime_key_names(self, state_dict, own)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    @init.guard_torch_init_functions()
    def initialize_weights(self) -> None:
        """transformers' `initialize_weights` (each sub-model's modules go to that sub-model's `_init_weights`), with
        one difference: each sub-model is treated by its own "custom code" flag, not this model's. Under the custom-code
        flag transformers counts a module without parameters of its own as initialised, which would skip a library
        sub-model's parent-level inits on `from_pretrained` (CLIP's attention and MLP set their linears' std)."""

        def apply(module: nn.Module, owner: PreTrainedModel) -> None:
            for child in module.children():
                apply(child, child if isinstance(child, PreTrainedModel) else owner)
            owner._initialize_weights(module, owner.is_custom_code())

        apply(self, self)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The model's own parameters: linears (fusion layers, prior projections, heads, `ensemble_to_backbone`,
        the concat-priors MLP) and LayerNorms by the library default, the ensemble tokens and per-prior embeddings
        trunc-normal(`initializer_range`), the fusion gate zero (closed). The priors and the backbone are sub-models:
        `initialize_weights` dispatches their modules to their own `_init_weights`, never to this one. So
        `from_pretrained` gives every missing weight a defined value (tests/models/test_conformance.py)."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, ETFuserEmbeddings):
            init.trunc_normal_(module.ensemble_tokens, mean=0.0, std=std)
        elif isinstance(module, ETFuserPriorProjection):
            init.trunc_normal_(module.prior_embedding, mean=0.0, std=std)
        elif isinstance(module, ETFuserGridPositionEmbedding):
            init.trunc_normal_(module.rows, mean=0.0, std=std)
            init.trunc_normal_(module.columns, mean=0.0, std=std)
        elif isinstance(module, ETFuserModel) and module.fusion_gate is not None:
            init.zeros_(module.fusion_gate)

    @classmethod
    def from_priors_pretrained(
        cls,
        priors: Mapping[str, str | os.PathLike | PreTrainedModel | Mapping[str, Any]],
        backbone: str | os.PathLike | PreTrainedModel | Any = None,
        **config_kwargs: Any,
    ) -> ETFuserPreTrainedModel:
        """Assembles an ET-Fuser from existing pretrained encoders.

        Args:
            priors: name -> a folder (or model id), a loaded `PreTrainedModel`, or a dict `{"model": <either>, **spec}`
                whose other keys override the prior's `EncoderSpec` (feature, num_tokens, image_size, ...). Input
                size and normalisation default to the folder's `preprocessor_config.json`, then to the encoder config.
            backbone: the canonical task model as a folder, a loaded model, a config (random init) or None (default
                ViT config, random init; none at all with `fusion_mode="priors_only"`).
            **config_kwargs: any other `ETFuserConfig` field (fusion width, mask strategy, labels, ...).

        The encoders' weights are copied in, so `save_pretrained` writes one self-contained `model.safetensors`.
        """
        if not isinstance(priors, Mapping):
            raise TypeError(f"priors: expected a mapping name -> pretrained encoder, got {type(priors).__name__}.")
        loaded: dict[str, PreTrainedModel] = {}
        specs: dict[str, dict[str, Any]] = {}
        for name, source in priors.items():
            overrides = dict(source) if isinstance(source, Mapping) else {"model": source}
            if "model" not in overrides:
                raise ValueError(f"priors[{name!r}]: a dict entry needs a 'model' key (folder or PreTrainedModel).")
            model, contract = load_pretrained_encoder(overrides.pop("model"), f"priors[{name!r}]")
            loaded[name] = model
            specs[name] = {**contract, **overrides, "config": model.config}

        backbone_model = None
        if isinstance(backbone, (str, os.PathLike, PreTrainedModel)):
            backbone_model, contract = load_pretrained_encoder(backbone, "backbone")
            backbone = {**contract, "config": backbone_model.config, "frozen": False}
        config = ETFuserConfig(priors=specs, backbone=backbone, **config_kwargs)
        model = cls(config)
        base = model.base_model
        for name, encoder in loaded.items():
            if name in base.priors:
                base.priors[name].load_state_dict(encoder.state_dict())
        if backbone_model is not None:
            base.backbone.load_state_dict(backbone_model.state_dict())
        return model


# ----------------------------------------------------------------------------------------------------------------------
# Base model
# ----------------------------------------------------------------------------------------------------------------------


class ETFuserConcatPriors(nn.Module):
    """The `concat_priors` baseline: every projected prior token concatenated, (batch, T * hidden_size), through one
    hidden layer to (batch, hidden_size). No ensemble token and no attention: what the ensemble token is compared to."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        num_tokens = sum(spec.num_output_tokens for spec in config.priors.values())
        self.dense = nn.Linear(num_tokens * config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, prior_tokens: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.dense(prior_tokens.flatten(1))))


class ETFuserModel(ETFuserPreTrainedModel):
    """Runs the frozen priors, fuses their tokens with the ensemble token(s) and fuses the result into the backbone
    (the canonical task model).

    `pooler_output` (batch, `fused_size`) is the representation every task head reads.
    """

    def __init__(self, config: ETFuserConfig):
        super().__init__(config)
        fusion = config.fusion_properties
        # a mode without priors (the "none" baseline) is the backbone alone: no prior weights, no fusion module
        fused_priors = config.priors if fusion.runs_priors else {}
        self.priors = nn.ModuleDict({name: build_encoder(spec) for name, spec in fused_priors.items()})
        self.embeddings = ETFuserEmbeddings(config) if fusion.runs_priors else None
        self.fusion = ETFuserFusion(config) if fusion.runs_priors and fusion.ensemble_token else None
        concatenates_priors = fusion.runs_priors and not fusion.ensemble_token
        self.concat_priors = ETFuserConcatPriors(config) if concatenates_priors else None
        self.backbone = build_encoder(config.backbone) if config.backbone is not None else None
        self.backbone_embeddings_path: str | None = None  # a path, not a module: a second reference would be saved twice
        self.ensemble_to_backbone = self.fusion_gate = None
        backbone_width = config.backbone.feature_dim if config.backbone is not None else 0
        if fusion.into_token_sequence:
            self.backbone_embeddings_path = self._token_backbone_embeddings()
            self.backbone.get_submodule(self.backbone_embeddings_path).register_forward_hook(_insert_ensemble_tokens)
            backbone_width = config.backbone.config.hidden_size
        if fusion.projects_to_backbone:
            self.ensemble_to_backbone = nn.Linear(config.hidden_size, backbone_width)
            if config.fusion_gate:
                self.fusion_gate = nn.Parameter(torch.zeros(backbone_width))
        if not fusion.canonical_model:
            self.fused_size = config.hidden_size
        elif fusion.at_pooled == "concat":
            self.fused_size = config.backbone.feature_dim + config.hidden_size
        else:
            self.fused_size = config.backbone.feature_dim
        self.post_init()
        self.freeze_priors()

    def _token_backbone_embeddings(self) -> str:
        """Path of the embedding module of a token-sequence backbone, where `prepend_token` inserts the token."""
        model_type = self.config.backbone.config.model_type
        if model_type not in TOKEN_SEQUENCE_BACKBONES:
            raise ValueError(
                f"fusion_mode={self.config.fusion_mode!r} needs a token-sequence backbone {TOKEN_SEQUENCE_BACKBONES}, "
                f"got {model_type!r}; use one of {POOLED_FUSION_MODES}, which work with any backbone."
            )
        return next(path for path, _ in self.backbone.named_modules() if path.split(".")[-1] == "embeddings")

    def freeze_priors(self) -> None:
        """Frozen priors never train: no gradients, eval mode (dropout/batch-norm statistics fixed)."""
        for name, prior in self.priors.items():
            if self.config.priors[name].frozen:
                prior.requires_grad_(False)
                prior.eval()
        if self.backbone is not None and self.config.backbone.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def train(self, mode: bool = True) -> ETFuserModel:
        super().train(mode)
        self.freeze_priors()
        return self

    def extract_prior_features(
        self, pixel_values: torch.Tensor, return_prior_outputs: bool = False,
        prior_crops: Mapping[str, torch.Tensor] | None = None, names: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], dict[str, ModelOutput]]:
        """Runs every prior (or those in `names`) on its own view of `pixel_values` (batch, 3, H, W) in [0, 1]: its
        crop where `prior_crops` holds its (batch, 2, 3) affine (see `forward`), else the whole input resized.

        Returns name -> selected feature tokens (batch, num_output_tokens, feature_dim): what a prior-feature cache
        stores and what `forward(prior_features=...)` accepts. With `return_prior_outputs=True`, also name -> the
        prior's own output (e.g. its `logits`, the readout `analyze` reports), from the same run: `(features,
        prior_outputs)`. `names` lets a caller run one prior first (face-api's landmarks, whose points place other
        priors' crops) and the rest after, each once.
        """
        if not isinstance(return_prior_outputs, bool):
            raise TypeError(f"return_prior_outputs: expected a bool, got {type(return_prior_outputs).__name__}.")
        if names is not None:
            unknown = [name for name in names if name not in self.priors] if not isinstance(names, str) else [names]
            if unknown:
                raise ValueError(f"names: expected a list of prior names from {list(self.priors)}, got {unknown!r}.")
        if prior_crops is not None:
            check_prior_crops(self.config, prior_crops, pixel_values)
        prior_crops = prior_crops or {}
        features, prior_outputs = {}, {}
        for name, prior in self.priors.items():
            if names is not None and name not in names:
                continue
            spec = self.config.priors[name]
            with torch.no_grad() if spec.frozen else nullcontext():
                inputs = prepare_encoder_inputs(pixel_values, spec, prior_crops.get(name),
                                                prior_crops.get(name + WINDOW_SUFFIX))
                outputs = prior(pixel_values=inputs, return_dict=True)
                features[name] = select_feature_tokens(outputs, spec, f"priors[{name!r}]")
            prior_outputs[name] = outputs
        return (features, prior_outputs) if return_prior_outputs else features

    def _fuse_priors(
        self, pixel_values: torch.Tensor | None, prior_features: Mapping[str, torch.Tensor] | None,
        output_attentions: bool, canonical_features: torch.Tensor | None = None, ensemble_tokens_only: bool = False,
        prior_crops: Mapping[str, torch.Tensor] | None = None,
    ) -> ETFuserModelOutput:
        """Prior tokens (and the canonical model's grid tokens, `canonical_features`) -> ensemble-token attention.
        Returns the fusion-side fields of the output (no pooler yet); for `concat_priors`, `ensemble_tokens` holds the
        concatenated priors' MLP output (batch, 1, hidden_size)."""
        if prior_features is None:
            prior_features = self.extract_prior_features(pixel_values, prior_crops=prior_crops)
        batch_size = next(iter(prior_features.values())).shape[0] if prior_features else pixel_values.shape[0]
        embedded, prior_tokens = self.embeddings(prior_features, batch_size, canonical_features)
        if self.concat_priors is not None:
            return ETFuserModelOutput(ensemble_tokens=self.concat_priors(prior_tokens).unsqueeze(1),
                                      prior_tokens=prior_tokens)
        sequence, last_attention = self.fusion(embedded, output_attentions, ensemble_tokens_only)
        prior_attention = None
        if output_attentions and self.config.priors and last_attention is not None:
            prior_attention = attention_over_priors(last_attention, self.config)
        return ETFuserModelOutput(last_hidden_state=sequence, ensemble_tokens=sequence[:, : self.config.num_ensemble_tokens],
                                  prior_tokens=prior_tokens, prior_attention=prior_attention)

    def _ensemble_for_backbone(self, ensemble: torch.Tensor) -> torch.Tensor:
        """(batch, E, hidden_size) -> (batch, E, backbone width), gated by tanh(g) where `config.fusion_gate`."""
        projected = self.ensemble_to_backbone(ensemble)
        return projected * torch.tanh(self.fusion_gate) if self.fusion_gate is not None else projected

    def _run_backbone(self, pixel_values: torch.Tensor, ensemble: torch.Tensor | None,
                      crop_affines: torch.Tensor | None = None, crop_windows: torch.Tensor | None = None
                      ) -> ModelOutput:
        """The canonical task model's outputs on `pixel_values` (its crop where `crop_affines` (batch, 2, 3) are
        given, with its window rows `crop_windows`), with the ensemble token inserted into its token sequence where
        the mode says so."""
        spec, fusion = self.config.backbone, self.config.fusion_properties
        backbone_inputs = prepare_encoder_inputs(pixel_values, spec, crop_affines, crop_windows)
        with torch.no_grad() if spec.frozen else nullcontext():
            if not fusion.into_token_sequence:
                return self.backbone(pixel_values=backbone_inputs, return_dict=True)
            # read by `_insert_ensemble_tokens` in this thread only: concurrent forwards each insert their own tokens
            embeddings = self.backbone.get_submodule(self.backbone_embeddings_path)
            token = _BACKBONE_ENSEMBLE_TOKENS.set((embeddings, self._ensemble_for_backbone(ensemble)))
            try:
                return self.backbone(pixel_values=backbone_inputs, return_dict=True)
            finally:
                _BACKBONE_ENSEMBLE_TOKENS.reset(token)

    def _fuse_at_pooled(self, backbone_outputs: ModelOutput, ensemble: torch.Tensor | None) -> torch.Tensor:
        """The canonical model's pooled output with the ensemble token fused in: (batch, fused_size)."""
        spec, fusion = self.config.backbone, self.config.fusion_properties
        pooled = pool_tokens(select_feature_tokens(backbone_outputs, spec, "backbone"))
        if fusion.at_pooled == "add":
            return pooled + pool_tokens(self._ensemble_for_backbone(ensemble)).to(pooled.dtype)
        if fusion.at_pooled == "concat":
            return torch.cat([pooled, pool_tokens(ensemble).to(pooled.dtype)], dim=-1)
        return pooled

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        prior_features: Mapping[str, torch.Tensor] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        ensemble_tokens_only: bool = False,
        prior_crops: Mapping[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> ETFuserModelOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch, 3, height, width)`):
            RGB images in [0, 1] (see `ETFuserImageProcessor`); every encoder resizes and normalises its own view.
        prior_features (`dict[str, torch.FloatTensor]`, *optional*):
            Precomputed `extract_prior_features` outputs, e.g. from a feature cache; the priors are then not run.
        prior_crops (`dict[str, torch.FloatTensor]`, *optional*):
            Per network (a prior's name, or `"backbone"` for the canonical model), `(batch, 2, 3)` affines mapping
            `pixel_values` pixel coordinates onto that network's crop of its `image_size`: pixel (i, j) covers
            [i, i + 1) x [j, j + 1) with its centre at (i + 0.5, j + 0.5) in both, as in `align_faces`
            (`grid_sample` with `align_corners=False`). Each crop is cut inside the forward before the network's own
            colour conversion and normalisation, so one `pixel_values` (a loose face crop) gives every network the
            crop its authors used; a network without an entry sees the whole input resized, as without the argument.
            Beside a network's affines, `name + ".window"` may hold its `(batch, 17)` window rows: the input pixel ->
            image pixel affine (2x3 flattened), the boxes `shown` and `bounds` in image pixels (x1, y1, x2, y2) and
            the fill per channel in [0, 1] (`encoders.windowed_grid_sample`): what its authors' pipeline shows around
            the face where the crop leaves the image (face-api's zero bars, fer's padding grey); without them the
            crop holds zeros outside the input.
        output_hidden_states (`bool`, `int` or `list[int]`, *optional*):
            `True` returns the fusion-side hidden states (see `ETFuserModelOutput.hidden_states`); an index or a list
            of indices (negative ones count from the end) returns all positions with `None` at the unselected ones.
        return_dict (`bool`, *optional*):
            `False` returns the tuple of the non-None fields in `ETFuserModelOutput` order.
        ensemble_tokens_only (`bool`, *optional*, defaults to `False`):
            The last fusion layer updates only the ensemble tokens (all the task heads read), so `last_hidden_state`
            is `(batch, num_ensemble_tokens, hidden_size)`; `ensemble_tokens` and `pooler_output` are unchanged.
            Like `logits_to_keep` in transformers' language models, it saves the compute of outputs nobody reads.
            Has no effect where hidden states or attentions are asked for: those need every position.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # resolved here: the capture reads a flag passed as None as "off", not as "the config's"
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        # every position is needed for attentions and for any hidden-state request (even one by the falsy index 0)
        asks_hidden_states = not (output_hidden_states is None or output_hidden_states is False)
        ensemble_tokens_only = ensemble_tokens_only and not (output_attentions or asks_hidden_states)
        captured = self._captured_forward(pixel_values, prior_features, output_attentions=output_attentions,
                                          output_hidden_states=output_hidden_states, return_dict=True,
                                          ensemble_tokens_only=ensemble_tokens_only, prior_crops=prior_crops)
        fields = {key: value for key, value in captured.items() if not (isinstance(value, tuple) and not value)}
        output = ETFuserModelOutput(**fields)  # the hooks add their fields last: rebuilt in the documented order
        return output if return_dict else output.to_tuple()

    @capture_outputs(tie_last_hidden_states=False)  # hidden_states[-1] is the last layer's output, before the norm
    def _captured_forward(
        self,
        pixel_values: torch.Tensor | None,
        prior_features: Mapping[str, torch.Tensor] | None,
        output_attentions: bool | None = None,
        ensemble_tokens_only: bool = False,
        prior_crops: Mapping[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> ETFuserModelOutput:
        """The forward, under transformers' output capture (which reads `output_hidden_states`/`output_attentions`
        from the call or the config and adds the captured `hidden_states`/`attentions` to the output)."""
        check_inputs(self.config, pixel_values, prior_features, prior_crops)
        fusion = self.config.fusion_properties
        backbone_crop = (prior_crops.get(BACKBONE_CROP_KEY), prior_crops.get(BACKBONE_CROP_KEY + WINDOW_SUFFIX)
                         ) if prior_crops is not None else (None, None)
        fused, backbone_outputs, canonical_features = ETFuserModelOutput(), None, None
        if fusion.canonical_tokens:  # the canonical model runs first: its grid tokens are part of the fusion input
            backbone_outputs = self._run_backbone(pixel_values, None, *backbone_crop)
            canonical_features = grid_tokens(backbone_outputs, self.config.backbone, self.config.canonical_grid_size,
                                             "backbone")
        if fusion.runs_priors:
            fused = self._fuse_priors(pixel_values, prior_features, bool(output_attentions), canonical_features,
                                      ensemble_tokens_only, prior_crops)
        if self.backbone is None:
            pooled = pool_tokens(fused.ensemble_tokens)
        else:
            if backbone_outputs is None:
                backbone_outputs = self._run_backbone(pixel_values, fused.ensemble_tokens, *backbone_crop)
            pooled = self._fuse_at_pooled(backbone_outputs, fused.ensemble_tokens)
        return dataclasses.replace(fused, pooler_output=pooled)


# ----------------------------------------------------------------------------------------------------------------------
# Task heads (their losses: losses.py)
# ----------------------------------------------------------------------------------------------------------------------


class ETFuserTaskHead(nn.Module):
    """Dropout + linear map from the fused representation (batch, fused_size) to (batch, num_outputs)."""

    def __init__(self, in_features: int, num_outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(in_features, num_outputs)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(pooled))


def ensemble_head(config: ETFuserConfig, num_outputs: int) -> ETFuserTaskHead | None:
    """The training-only head of `config.ensemble_loss_weight` (deep supervision of the ensemble token, or of the
    `concat_priors` MLP's output), where the fusion output meets a canonical model; None otherwise."""
    if not config.ensemble_loss_weight or not config.fusion_properties.supervises_ensemble_token:
        return None
    return ETFuserTaskHead(config.hidden_size, num_outputs, config.classifier_dropout)


def binned_expectation(scores: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """(batch, num_bins) scores -> (batch,) the expected value `softmax(scores) @ bins` (computed in float32 at
    least: a bf16 softmax over 81 age bins would cost a year of resolution)."""
    dtype = torch.promote_types(scores.dtype, torch.float32)
    return scores.to(dtype).softmax(dim=-1) @ bins.to(device=scores.device, dtype=dtype)


class ETFuserForImageClassification(ETFuserPreTrainedModel):
    """ET-Fuser with a classification/regression head: single-label (expression), multi-label (attributes, action
    units) or regression (age, valence, arousal), chosen by `config.problem_type` (inferred from the labels when
    unset). With `config.regression_bins` a regression head scores one logit per bin and reads out their expectation
    (`binned_expectation`), as the dlib age net reads its age."""

    def __init__(self, config: ETFuserConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        num_scores = len(config.regression_bins) if config.regression_bins else config.num_labels
        self.etfuser = ETFuserModel(config)
        self.classifier = ETFuserTaskHead(self.etfuser.fused_size, num_scores, config.classifier_dropout)
        self.ensemble_head = ensemble_head(config, num_scores)
        self.auxiliary = ETFuserAuxiliaryTasks(config) if config.auxiliary_tasks else None
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        prior_features: Mapping[str, torch.Tensor] | None = None,
        landmarks: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        prior_crops: Mapping[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> ETFuserImageClassifierOutput | tuple:
        r"""
        labels (`torch.LongTensor` of shape `(batch,)` or `torch.FloatTensor` of shape `(batch, num_labels)`, *optional*):
            Class ids for single-label classification (or class probabilities, soft targets, where
            `config.problem_type` is single-label), multi-hot targets for multi-label, values for regression.
            `config.class_weights` and `config.label_smoothing` apply to the task head and the ensemble head alike.
        landmarks (`torch.FloatTensor` of shape `(batch, 68, 2)`, *optional*):
            Landmarks in [0, 1], needed only by the landmark-based auxiliary tasks during training.
        prior_crops (`dict[str, torch.FloatTensor]`, *optional*):
            Each network's crop of `pixel_values` as `(batch, 2, 3)` affines (see `ETFuserModel.forward`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.etfuser(
            pixel_values,
            prior_features=prior_features,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            ensemble_tokens_only=True,
            prior_crops=prior_crops,
        )
        logits = self._read_out(self.classifier(outputs.pooler_output))
        loss = None
        if labels is not None:
            problem_type = self.config.problem_type or infer_problem_type(self.num_labels, labels)
            balance = {"class_weights": self.config.class_weights, "label_smoothing": self.config.label_smoothing}
            loss = compute_task_loss(logits, labels.to(logits.device), problem_type, self.config.regression_loss,
                                     **balance)
            if self.training and self.ensemble_head is not None:
                ensemble_logits = self._read_out(self.ensemble_head(pool_tokens(outputs.ensemble_tokens)))
                loss = loss + self.config.ensemble_loss_weight * compute_task_loss(
                    ensemble_logits, labels.to(logits.device), problem_type, self.config.regression_loss, **balance)
            if self.training and self.auxiliary is not None and pixel_values is not None:
                loss = loss + self.auxiliary.weighted_sum(self.auxiliary(self.etfuser, pixel_values, landmarks))
        output = ETFuserImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            prior_attention=outputs.prior_attention,
        )
        return output if return_dict else output.to_tuple()

    def _read_out(self, scores: torch.Tensor) -> torch.Tensor:
        """A head's scores as the model's `logits`: as they are, or, with `config.regression_bins`, (batch, num_bins)
        -> (batch, 1) their expectation over the bins."""
        if not self.config.regression_bins:
            return scores
        # from the config in each call, not a buffer: nothing to keep in step with it, or to lose on a meta-device load
        return binned_expectation(scores, torch.tensor(self.config.regression_bins)).unsqueeze(-1)


class ETFuserForLandmarkDetection(ETFuserPreTrainedModel):
    """ET-Fuser regressing `config.num_landmarks` facial landmarks as (x, y) in [0, 1] image coordinates."""

    def __init__(self, config: ETFuserConfig):
        super().__init__(config)
        self.etfuser = ETFuserModel(config)
        self.landmark_head = ETFuserTaskHead(self.etfuser.fused_size, 2 * config.num_landmarks, config.classifier_dropout)
        self.ensemble_head = ensemble_head(config, 2 * config.num_landmarks)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        prior_features: Mapping[str, torch.Tensor] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        prior_crops: Mapping[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> ETFuserLandmarkOutput | tuple:
        r"""
        labels (`torch.FloatTensor` of shape `(batch, num_landmarks, 2)`, *optional*):
            Target (x, y) in [0, 1] image coordinates.
        prior_crops (`dict[str, torch.FloatTensor]`, *optional*):
            Each network's crop of `pixel_values` as `(batch, 2, 3)` affines (see `ETFuserModel.forward`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.etfuser(
            pixel_values,
            prior_features=prior_features,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            ensemble_tokens_only=True,
            prior_crops=prior_crops,
        )
        landmarks = torch.sigmoid(self.landmark_head(outputs.pooler_output)).view(-1, self.config.num_landmarks, 2)
        loss = nme = None
        if labels is not None:
            labels = labels.to(landmarks.device)
            loss = compute_task_loss(landmarks, labels, "landmarks", self.config.landmark_loss)
            if self.training and self.ensemble_head is not None:
                ensemble_points = torch.sigmoid(self.ensemble_head(pool_tokens(outputs.ensemble_tokens)))
                loss = loss + self.config.ensemble_loss_weight * compute_task_loss(
                    ensemble_points.view_as(landmarks), labels, "landmarks", self.config.landmark_loss)
            nme = normalized_mean_error(landmarks, labels.to(landmarks.dtype), self.config.interocular_indices)
        output = ETFuserLandmarkOutput(
            loss=loss,
            landmarks=landmarks,
            nme=nme,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            prior_attention=outputs.prior_attention,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "ETFuserPreTrainedModel",
    "ETFuserModel",
    "ETFuserForImageClassification",
    "ETFuserForLandmarkDetection",
    "ETFuserModelOutput",
    "ETFuserImageClassifierOutput",
    "ETFuserLandmarkOutput",
    "binned_expectation",
    "compute_task_loss",
    "normalized_mean_error",
]
