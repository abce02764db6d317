"""Where the ensemble token looks: its last-layer attention over each grid prior's g x g tokens (and the canonical
model's own, under `fusion_mode="canonical_tokens"`), drawn on the face.

    maps = grid_attention(model, pixel_values)          # {prior: (batch, g, g)}, each map summing to 1
    maps = crop_attention(model, crops)                 # the same from aligned uint8 crops (faces, S, S, 3), batched
    attention_overlay(face, maps["age"][0])             # a PIL image: the face with the map on top
    attention_strip(face, {name: grid[0] for name, grid in maps.items()})   # the face, then one overlay per grid
    save_attention_figure(path, face_rows("expression", faces, maps))   # faces x priors: plots/attention_maps.png

Only priors read as grid tokens (`EncoderSpec(feature="grid")`) have a map; a model without any gives `{}`
(`check_reads_grids` says so as an error). The run folder's `plots/attention_maps.png`, `etfuser analyze
--attention-maps` and the Space's "where the token looks" picture all draw with these functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..models.modeling_etfuser import ETFuserPreTrainedModel, token_groups

CANONICAL = "canonical"  # the key of the canonical model's own grid in `grid_attention`


def grid_layout(model: ETFuserPreTrainedModel) -> dict[str, tuple[int, int]]:
    """{prior (or `CANONICAL`): (its token group in `token_groups`, grid size)} for every grid in the fusion."""
    config = model.config
    layout = {name: (index, spec.grid_size) for index, (name, spec) in enumerate(config.priors.items(), start=1)
              if spec.feature == "grid"}
    if config.fusion_properties.canonical_tokens:
        layout[CANONICAL] = (len(config.priors) + 1, config.canonical_grid_size)
    return layout


@torch.no_grad()
def grid_attention(model: ETFuserPreTrainedModel, pixel_values: torch.Tensor,
                   prior_features: Mapping[str, torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """The ensemble tokens' last-layer attention (mean over heads and ensemble tokens) over each grid's cells,
    renormalised within the grid: {prior: (batch, g, g)} float32 maps summing to 1 per face. `pixel_values` is
    (batch, 3, H, W) RGB in [0, 1], as the model takes it."""
    if not reads_grids(model):
        return {}
    layout = grid_layout(model)
    model.eval()
    outputs = model(pixel_values=pixel_values, prior_features=prior_features, output_attentions=True)
    config = model.config
    ensemble_rows = outputs.attentions[-1][:, :, : config.num_ensemble_tokens].float().mean(dim=(1, 2))  # (batch, L)
    groups = torch.tensor(token_groups(config), device=ensemble_rows.device)
    maps = {}
    for name, (group, size) in layout.items():
        cells = ensemble_rows[:, groups == group]  # (batch, g * g), row-major as encoders.grid_tokens orders them
        cells = cells / cells.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(cells.dtype).tiny)
        maps[name] = cells.reshape(-1, size, size).cpu().numpy()
    return maps


def reads_grids(model: ETFuserPreTrainedModel) -> bool:
    """Whether `model`'s ensemble token attends over at least one grid of tokens (so it has a map to draw)."""
    return bool(grid_layout(model)) and model.base_model.fusion is not None


def check_reads_grids(model: ETFuserPreTrainedModel, argument: str) -> None:
    """Raises a ValueError naming `argument` where `model`'s ensemble token attends over no grid (nothing to draw)."""
    if not reads_grids(model):
        pooled = ", ".join(f"{name}: {spec.feature}" for name, spec in model.config.priors.items()) or "no priors"
        raise ValueError(f"{argument}: this model's ensemble token attends over no grid of prior tokens ({pooled}; "
                         f"fusion_mode={model.config.fusion_mode!r}), so there is no map to draw; its share of "
                         "attention per prior is in the attention_<prior> columns. Use a model whose priors are "
                         "read as grid tokens (EncoderSpec feature='grid'), e.g. the main job's "
                         "runs/<run>/checkpoints/attention/<task>.")


def crop_attention(model: ETFuserPreTrainedModel, crops: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
    """`grid_attention` of aligned face crops `(faces, S, S, 3)` uint8 RGB, `batch_size` at a time:
    {prior: (faces, g, g)} float32 ({} without grids, or without faces)."""
    if not reads_grids(model):
        return {}
    if not len(crops):
        return {name: np.zeros((0, size, size), np.float32) for name, (_, size) in grid_layout(model).items()}
    dtype = next(model.parameters()).dtype
    batches = [grid_attention(model, torch.from_numpy(crops[start:start + batch_size]).permute(0, 3, 1, 2)
                              .to(dtype).div(255))
               for start in range(0, len(crops), batch_size)]
    return {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}


def attention_overlay(face: PIL.Image.Image, grid: np.ndarray, alpha: float = 0.55) -> PIL.Image.Image:
    """`face` with the (g, g) attention map `grid` laid over it (nearest-cell upsampling, so the cells stay visible;
    the colour scale runs from the map's smallest to its largest cell)."""
    from matplotlib import colormaps

    grid = np.asarray(grid, dtype=np.float32)
    span = float(grid.max() - grid.min())
    scaled = (grid - grid.min()) / span if span > 0 else np.zeros_like(grid)
    colours = (colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8)
    heat = PIL.Image.fromarray(colours).resize(face.size, PIL.Image.Resampling.NEAREST)
    return PIL.Image.blend(face.convert("RGB"), heat, alpha)


def attention_strip(face: PIL.Image.Image, maps: Mapping[str, np.ndarray], gap: int = 4) -> PIL.Image.Image:
    """One image for one face: the face, then its `attention_overlay` for each grid of `maps` ({name: (g, g)}),
    left to right in `maps` order, `gap` white pixels apart (the caption naming them is the caller's)."""
    face = face.convert("RGB")
    panels = [face] + [attention_overlay(face, grid) for grid in maps.values()]
    strip = PIL.Image.new("RGB", (len(panels) * face.width + (len(panels) - 1) * gap, face.height), "white")
    for index, panel in enumerate(panels):
        strip.paste(panel, (index * (face.width + gap), 0))
    return strip


def save_frame_figures(folder: str | Path, model: ETFuserPreTrainedModel,
                       frames: Mapping[tuple[str, int], Sequence[tuple[str, np.ndarray]]],
                       batch_size: int = 32) -> list[Path]:
    """Writes `<folder>/<source>_frame<NNNNNN>.png` for each `(source, frame)` of `frames`, whose value lists its faces
    as (row title, aligned crop `(S, S, 3)` uint8 RGB): a figure with a row per face, the face and its overlay for
    each grid (`save_attention_figure`). In the file name every character of the source other than letters, digits,
    `.`, `-` and `_` becomes `_`. Returns the paths written."""
    faces = [crop for entries in frames.values() for _, crop in entries]
    if not faces:
        return []
    maps = crop_attention(model, np.stack(faces), batch_size)
    paths, offset = [], 0
    for (source, frame), entries in frames.items():
        rows = [(title, PIL.Image.fromarray(crop), {name: grid[offset + index] for name, grid in maps.items()})
                for index, (title, crop) in enumerate(entries)]
        offset += len(entries)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("_")
        paths.append(save_attention_figure(Path(folder) / f"{name}_frame{frame:06d}.png", rows,
                                           title=f"{source}, frame {frame}: where the ensemble token looks"))
    return paths


def face_rows(title: str, faces: Sequence[PIL.Image.Image], maps: Mapping[str, np.ndarray]
              ) -> list[tuple[str, PIL.Image.Image, dict[str, np.ndarray]]]:
    """One `save_attention_figure` row per face of a batch: (`title` and the face's index, the face, its maps)."""
    return [(f"{title} #{index}", face, {name: grid[index] for name, grid in maps.items()})
            for index, face in enumerate(faces)]


def save_attention_figure(path: str | Path, rows: Sequence[tuple[str, PIL.Image.Image, Mapping[str, np.ndarray]]],
                          title: str | None = None) -> Path:
    """Writes a figure of one row per (title, face, {grid name: (g, g) map}): the face, then each grid's
    `attention_overlay`, a column per grid name (rows without that grid, e.g. another task's priors, leave it blank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(name for _, _, maps in rows for name in maps))
    figure, axes = plt.subplots(len(rows), len(names) + 1, figsize=(1.9 * (len(names) + 1), 1.9 * len(rows)),
                                squeeze=False)
    for row, (row_title, face, maps) in enumerate(rows):
        axes[row, 0].imshow(face)
        axes[row, 0].set_ylabel(row_title, fontsize=7)
        for column, name in enumerate(names, start=1):
            if name in maps:
                grid = np.asarray(maps[name])
                axes[row, column].imshow(attention_overlay(face, grid))
                # the largest share next to the uniform one (1 / cells): the colours stretch any map to full range
                # two short lines: one line overflowed its panel at 7x7 and ran into the next panel's title
                axes[row, column].set_title(f"{name} {grid.shape[0]}x{grid.shape[1]}\nmax {grid.max():.2f} "
                                            f"(even {1 / grid.size:.2f})", fontsize=6)
            else:
                axes[row, column].axis("off")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title or "ensemble token attention over each prior's grid (last fusion layer)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


__all__ = ["CANONICAL", "attention_overlay", "attention_strip", "check_reads_grids", "crop_attention", "face_rows",
           "grid_attention", "grid_layout", "reads_grids", "save_attention_figure", "save_frame_figures"]
