"""Where the ensemble token looks: its last-layer attention over each grid prior's g x g tokens (and the canonical
model's own, under `fusion_mode="canonical_tokens"`), drawn on the crop of the face that grid's network reads.

    maps = grid_attention(model, pixel_values, prior_crops=crops)   # {prior: (batch, g, g)}, each map summing to 1
    panels = attention_panels(model, pixel_values, crops)            # the maps, each network's crop, the inputs
    attention_strip(face, grids, crops)                              # the face, then each grid over its own crop
    save_attention_figure(path, panels.rows("expression"))          # faces x grids: plots/attention_maps.png

A prior's g x g grid lives in that prior's own crop (`prior_crops`: the affine from the model's input onto the crop
its authors cut, `priors/crop_plan.py`), so each map is drawn over that crop, cut from the input through the same
affine and window rows (`crop_geometry.cut_crops`: face-api's bars and fer's padding where they are) and shown in RGB
whatever the network's colour mode; the canonical model's grid
(`CANONICAL`) over the backbone's crop. A network without an affine reads the whole input resized, and is drawn so.
`analyze` passes the crops of the table's own run (the canonical crops and the `CropPlan` affines its backend placed),
training the crops the synthetic faces' landmarks place (`data.face_crops`): the run folder's
`plots/attention_maps.png`, `etfuser analyze --attention-maps` and the Space's "where the token looks" picture all
draw through `attention_panels` and these functions.

Only priors read as grid tokens (`EncoderSpec(feature="grid")`) have a map; a model without any gives `{}`
(`check_reads_grids` says so as an error).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..models.input_checks import BACKBONE_CROP_KEY, WINDOW_SUFFIX
from ..models.modeling_etfuser import ETFuserPreTrainedModel, token_groups
from ..priors.crop_geometry import cut_crops

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
                   prior_features: Mapping[str, torch.Tensor] | None = None,
                   prior_crops: Mapping[str, torch.Tensor] | None = None) -> dict[str, np.ndarray]:
    """The ensemble tokens' last-layer attention (mean over heads and ensemble tokens) over each grid's cells,
    renormalised within the grid: {prior: (batch, g, g)} float32 maps summing to 1 per face. `pixel_values` is
    (batch, 3, H, W) RGB in [0, 1] and `prior_crops` each network's (batch, 2, 3) affines, as the model takes them."""
    if not reads_grids(model):
        return {}
    model.eval()
    outputs = model(pixel_values=pixel_values, prior_features=prior_features, prior_crops=prior_crops,
                    output_attentions=True)
    return attention_grids(outputs.attentions[-1], model)


def attention_grids(attention: torch.Tensor, model: ETFuserPreTrainedModel) -> dict[str, np.ndarray]:
    """`grid_attention` from the fusion's last-layer attention weights (batch, heads, L, L) of any forward of
    `model` (e.g. the one that filled the table)."""
    config = model.config
    ensemble_rows = attention[:, :, : config.num_ensemble_tokens].float().mean(dim=(1, 2))  # (batch, L)
    groups = torch.tensor(token_groups(config), device=ensemble_rows.device)
    maps = {}
    for name, (group, size) in grid_layout(model).items():
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


def network_crops(model: ETFuserPreTrainedModel, pixel_values: torch.Tensor,
                  prior_crops: Mapping[str, torch.Tensor | np.ndarray] | None, names: Sequence[str],
                  size: int) -> dict[str, np.ndarray]:
    """The crop of each face that the network behind each grid of `names` reads (a prior by its name, the canonical
    model for `CANONICAL`), cut from `pixel_values` (batch, 3, H, W) in [0, 1] through that network's `prior_crops`
    affine (batch, 2, 3) and window rows (its original pipeline's bars or padding; the whole input where it has no
    affine), as `size` x `size` uint8 RGB (batch, size, size, 3): the same region the network samples at its own
    input size, in colour."""
    prior_crops = prior_crops or {}
    batch, (height, width) = pixel_values.shape[0], pixel_values.shape[-2:]
    crops = {}
    for name in names:
        key = BACKBONE_CROP_KEY if name == CANONICAL else name
        spec = model.config.backbone if name == CANONICAL else model.config.priors[name]
        windows = None
        if prior_crops.get(key) is not None:
            affines = torch.as_tensor(prior_crops[key], dtype=torch.float64).cpu().clone()
            crop_height, crop_width = spec.image_size
            if prior_crops.get(key + WINDOW_SUFFIX) is not None:
                windows = torch.as_tensor(prior_crops[key + WINDOW_SUFFIX], dtype=torch.float32).cpu()
        else:  # the network reads the whole input, resized
            affines = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64).repeat(batch, 1, 1)
            crop_height, crop_width = height, width
        # the same region at `size` pixels a side: each row of the affine (crop x, crop y) scaled
        affines *= torch.tensor([[size / crop_width], [size / crop_height]], dtype=torch.float64)
        # the windows' fill is in [0, 1], so the crop is cut in [0, 1] and scaled after (the sampling is linear)
        cut = cut_crops(pixel_values.detach().float().cpu(), affines, size, antialias=True, windows=windows) * 255
        crops[name] = cut.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return crops


@dataclass(frozen=True)
class FaceAttention:
    """One face's row of an attention figure: its `title`, the `face` as the model reads it (its whole input), and
    per grid its (g, g) map in `grids` and, in `crops`, the crop of the face that grid's network reads (RGB)."""

    title: str
    face: PIL.Image.Image
    grids: dict[str, np.ndarray]
    crops: dict[str, PIL.Image.Image]


@dataclass(frozen=True)
class AttentionPanels:
    """Where the ensemble token looks on a batch of faces, and what to draw it on (`attention_panels`).

    maps: {grid: (faces, g, g)} float32, each map summing to 1 (`grid_attention`).
    crops: {grid: (faces, P, P, 3)} uint8 RGB, the crop of each face that grid's network reads (`network_crops`).
    faces: (faces, P, P, 3) uint8 RGB, each face as the model reads it (its whole input, resized).
    """

    maps: dict[str, np.ndarray]
    crops: dict[str, np.ndarray]
    faces: np.ndarray

    def __len__(self) -> int:
        return len(self.faces)

    def face(self, index: int, title: str) -> FaceAttention:
        """Face `index` as one figure row titled `title`."""
        return FaceAttention(title, PIL.Image.fromarray(self.faces[index]),
                             {name: grid[index] for name, grid in self.maps.items()},
                             {name: PIL.Image.fromarray(crops[index]) for name, crops in self.crops.items()})

    def rows(self, title: str) -> list[FaceAttention]:
        """One figure row per face, titled `title` and the face's index."""
        return [self.face(index, f"{title} #{index}") for index in range(len(self))]

    @classmethod
    def concatenate(cls, parts: Sequence[AttentionPanels]) -> AttentionPanels:
        """The faces of `parts` (at least one), in order."""
        return cls({name: np.concatenate([part.maps[name] for part in parts]) for name in parts[0].maps},
                   {name: np.concatenate([part.crops[name] for part in parts]) for name in parts[0].crops},
                   np.concatenate([part.faces for part in parts]))


def attention_panels(model: ETFuserPreTrainedModel, pixel_values: torch.Tensor,
                     prior_crops: Mapping[str, torch.Tensor | np.ndarray] | None = None,
                     size: int | None = None) -> AttentionPanels:
    """The ensemble token's map over each grid for `pixel_values` (batch, 3, H, W) RGB in [0, 1] with each network's
    `prior_crops` affines (batch, 2, 3) (numpy or torch; None: every network reads the whole input), each network's
    crop of every face to draw its map over, and the faces themselves, all at `size` pixels a side (default: the
    input's height). Empty maps and crops for a model without grids."""
    size = size or pixel_values.shape[-2]
    if not len(pixel_values):
        layout = grid_layout(model) if reads_grids(model) else {}
        return AttentionPanels({name: np.zeros((0, grid, grid), np.float32) for name, (_, grid) in layout.items()},
                               {name: np.zeros((0, size, size, 3), np.uint8) for name in layout},
                               np.zeros((0, size, size, 3), np.uint8))
    parameter = next(model.parameters())  # the maps are computed where the model is (a GPU's), drawn on the CPU
    tensors = None if prior_crops is None else {
        name: torch.as_tensor(affines, dtype=torch.float32, device=parameter.device) for name, affines in
        prior_crops.items()}
    maps = grid_attention(model, pixel_values.to(parameter.device, parameter.dtype), prior_crops=tensors)
    whole = torch.zeros(len(pixel_values), 2, 3, dtype=torch.float64)
    whole[:, 0, 0], whole[:, 1, 1] = size / pixel_values.shape[-1], size / pixel_values.shape[-2]
    faces = cut_crops(pixel_values.detach().float().cpu() * 255, whole, size, antialias=True)
    return AttentionPanels(maps, network_crops(model, pixel_values, prior_crops, list(maps), size),
                           faces.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())


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


def attention_strip(face: PIL.Image.Image, maps: Mapping[str, np.ndarray], crops: Mapping[str, PIL.Image.Image],
                    gap: int = 4) -> PIL.Image.Image:
    """One image for one face: the face, then each grid of `maps` ({name: (g, g)}) as an `attention_overlay` over
    that grid's network crop (`crops`, {name: image the size of `face`}), left to right in `maps` order, `gap` white
    pixels apart (the caption naming them is the caller's)."""
    face = face.convert("RGB")
    panels = [face] + [attention_overlay(crops[name], grid) for name, grid in maps.items()]
    strip = PIL.Image.new("RGB", (len(panels) * face.width + (len(panels) - 1) * gap, face.height), "white")
    for index, panel in enumerate(panels):
        strip.paste(panel, (index * (face.width + gap), 0))
    return strip


def save_frame_figures(folder: str | Path, frames: Mapping[tuple[str, int], Sequence[FaceAttention]]
                       ) -> list[Path]:
    """Writes `<folder>/<source>_frame<NNNNNN>.png` for each `(source, frame)` of `frames`, whose value lists its faces
    as figure rows (`AttentionPanels.face`): a row per face, the face and each grid over its network's crop
    (`save_attention_figure`). In the file name every character of the source other than letters, digits, `.`, `-`
    and `_` becomes `_`. Returns the paths written."""
    paths = []
    for (source, frame), rows in frames.items():
        if not rows:
            continue
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("_")
        paths.append(save_attention_figure(Path(folder) / f"{name}_frame{frame:06d}.png", rows,
                                           title=f"{source}, frame {frame}: where the ensemble token looks"))
    return paths


def save_attention_figure(path: str | Path, rows: Sequence[FaceAttention], title: str | None = None) -> Path:
    """Writes a figure of one row per face (`FaceAttention`): the face, then each grid's `attention_overlay` over that
    grid's network crop, a column per grid name (rows without that grid, e.g. another task's priors, leave it
    blank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(name for row in rows for name in row.grids))
    figure, axes = plt.subplots(len(rows), len(names) + 1, figsize=(1.9 * (len(names) + 1), 1.9 * len(rows)),
                                squeeze=False)
    for index, row in enumerate(rows):
        axes[index, 0].imshow(row.face)
        axes[index, 0].set_ylabel(row.title, fontsize=7)
        for column, name in enumerate(names, start=1):
            if name in row.grids:
                grid = np.asarray(row.grids[name])
                axes[index, column].imshow(attention_overlay(row.crops[name], grid))
                # the largest share next to the uniform one (1 / cells): the colours stretch any map to full range
                # two short lines: one line overflowed its panel at 7x7 and ran into the next panel's title
                axes[index, column].set_title(f"{name} {grid.shape[0]}x{grid.shape[1]}\nmax {grid.max():.2f} "
                                              f"(even {1 / grid.size:.2f})", fontsize=6)
            else:
                axes[index, column].axis("off")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title or "ensemble token attention over each prior's grid, on its own crop (last fusion layer)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


__all__ = ["CANONICAL", "AttentionPanels", "FaceAttention", "attention_grids", "attention_overlay",
           "attention_panels", "attention_strip", "check_reads_grids", "grid_attention", "grid_layout",
           "network_crops", "reads_grids", "save_attention_figure", "save_frame_figures"]
