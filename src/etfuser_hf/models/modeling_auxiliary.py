"""Training-only self-supervised auxiliary tasks on the task backbone, dropped at inference.

- HMTL (Pourmirzaei et al., arXiv 2105.06421): **jigsaw** puzzling — the image is cut into a 2x2 or 3x3 grid, tiles
  are permuted, one head per tile predicts the tile's original position — and **inpainting** — a square region is
  blanked and a light decoder reconstructs it (L1 on the region + a perceptual loss on a frozen prior's features).
- Multi-level face priors (Sun et al., Pattern Recognition 2025): **masked_pixels** (pixel level: random patches
  blanked and reconstructed), **landmark_heatmap** (patch level: for every landmark, which patch holds it) and
  **components** (component level: some eyes / nose / mouth are erased at random; the head predicts each
  component's presence (BCE) and its box derived from the landmarks (smooth L1)).

Each task builds its own input view from `pixel_values` (and `landmarks` where needed) inside the forward, so no
extra data columns are required beyond landmarks. Switched on by `ETFuserConfig.auxiliary_tasks`; the models add
`sum(weight * loss)` to their task loss in training mode only, and `save_pretrained` leaves these heads out unless
`include_auxiliary=True`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_etfuser import ETFuserConfig
from .encoders import pool_tokens, prepare_encoder_inputs, select_feature_tokens

COMPONENTS = {"left_eye": range(36, 42), "right_eye": range(42, 48), "nose": range(27, 36), "mouth": range(48, 68)}


# ----------------------------------------------------------------------------------------------------------------------
# input views
# ----------------------------------------------------------------------------------------------------------------------


def jigsaw_puzzle(pixel_values: torch.Tensor, grid: int, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cuts each image (batch, C, H, W) into grid x grid tiles and permutes them per image.

    Returns the shuffled images (batch, C, grid*t, grid*t) with t = min(H, W) // grid, and labels (batch, grid**2):
    `labels[b, i]` is the original position of the tile now at position i.
    """
    batch, channels = pixel_values.shape[:2]
    tile = min(pixel_values.shape[-2:]) // grid
    images = F.interpolate(pixel_values, size=(grid * tile, grid * tile), mode="bilinear", align_corners=False)
    tiles = images.unfold(2, tile, tile).unfold(3, tile, tile)  # (B, C, grid, grid, t, t)
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(batch, grid * grid, channels, tile, tile)
    labels = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(batch)]).to(images.device)
    shuffled = tiles[torch.arange(batch, device=images.device)[:, None], labels]
    shuffled = shuffled.reshape(batch, grid, grid, channels, tile, tile).permute(0, 3, 1, 4, 2, 5)
    return shuffled.reshape(batch, channels, grid * tile, grid * tile), labels


def square_region_mask(shape: tuple[int, ...], fraction: float, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
    """(batch, 1, H, W) bool: a random square of side `fraction * min(H, W)` per image."""
    batch, _, height, width = shape
    side = max(1, int(fraction * min(height, width)))
    mask = torch.zeros(batch, 1, height, width, dtype=torch.bool)
    tops = torch.randint(0, height - side + 1, (batch,), generator=generator)
    lefts = torch.randint(0, width - side + 1, (batch,), generator=generator)
    for index in range(batch):
        mask[index, :, tops[index] : tops[index] + side, lefts[index] : lefts[index] + side] = True
    return mask


def patch_mask(shape: tuple[int, ...], patch_size: int, ratio: float, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """(batch, 1, H, W) bool: a random `ratio` of the patch_size x patch_size patches."""
    batch, _, height, width = shape
    rows, columns = height // patch_size, width // patch_size
    chosen = torch.rand(batch, 1, rows, columns, generator=generator) < ratio
    return chosen.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)


def component_boxes(landmarks: torch.Tensor) -> torch.Tensor:
    """(batch, 68, 2) landmarks in [0, 1] -> (batch, 4, 4) boxes (x0, y0, x1, y1) of eyes, nose and mouth."""
    boxes = []
    for indices in COMPONENTS.values():
        points = landmarks[:, list(indices)]
        boxes.append(torch.cat([points.amin(dim=1), points.amax(dim=1)], dim=-1))
    return torch.stack(boxes, dim=1)


def erase_components(pixel_values: torch.Tensor, boxes: torch.Tensor, probability: float,
                     generator: torch.Generator | None = None, margin: float = 0.15
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Hides each facial component with `probability`: its box (batch, 4, 4) in [0, 1], grown by `margin` of its size,
    is filled with the image's mean colour.

    Returns the erased images (batch, C, H, W) and presence targets (batch, 4) float: 1 where the component is visible
    (not erased and its box centre inside the image), else 0."""
    batch, _, height, width = pixel_values.shape
    erased = torch.rand(boxes.shape[:2], generator=generator).to(boxes.device) < probability
    size = (boxes[..., 2:] - boxes[..., :2]).clamp_min(1.0 / max(height, width))
    low, high = boxes[..., :2] - margin * size, boxes[..., 2:] + margin * size  # (batch, 4, 2) each
    xs = (torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5) / width
    ys = (torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5) / height
    inside_x = (xs >= low[..., 0, None]) & (xs <= high[..., 0, None])  # (batch, 4, W)
    inside_y = (ys >= low[..., 1, None]) & (ys <= high[..., 1, None])  # (batch, 4, H)
    hidden = (inside_y[..., :, None] & inside_x[..., None, :] & erased[..., None, None]).any(dim=1, keepdim=True)
    fill = pixel_values.mean(dim=(2, 3), keepdim=True).expand_as(pixel_values)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    in_image = ((centre >= 0) & (centre <= 1)).all(dim=-1)
    return torch.where(hidden, fill, pixel_values), (~erased & in_image).to(pixel_values.dtype)


# ----------------------------------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------------------------------


class PatchDecoder(nn.Module):
    """Light decoder (SimMIM-style): patch tokens (batch, N, D) -> RGB image (batch, 3, H, W) in [0, 1]."""

    def __init__(self, width: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.dense = nn.Linear(width, 3 * patch_size**2)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        patches = torch.sigmoid(self.dense(tokens))  # (B, N, 3 p p)
        batch = patches.shape[0]
        rows, columns = grid
        patches = patches.view(batch, rows, columns, 3, self.patch_size, self.patch_size)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, 3, rows * self.patch_size, columns * self.patch_size)


class ETFuserAuxiliaryTasks(nn.Module):
    """The switched-on auxiliary heads; `forward(etfuser, pixel_values, landmarks)` returns name -> loss."""

    def __init__(self, config: ETFuserConfig):
        super().__init__()
        self.settings = config.auxiliary_tasks
        backbone = config.backbone
        if backbone is None:
            raise ValueError("auxiliary_tasks need a backbone (they train its representation); fusion_mode is "
                             "'priors_only'.")
        width = backbone.feature_dim
        token_tasks = {"inpainting", "masked_pixels", "landmark_heatmap"} & set(self.settings)
        patch_size = getattr(backbone.config, "patch_size", None)
        if token_tasks and not isinstance(patch_size, int):
            raise ValueError(f"auxiliary_tasks {sorted(token_tasks)} need a ViT-style backbone with an int patch_size, "
                             f"got {backbone.config.model_type!r}.")
        token_width = getattr(backbone.config, "hidden_size", width)
        self.heads = nn.ModuleDict()
        if "jigsaw" in self.settings:
            grid = self.settings["jigsaw"]["grid"]
            self.heads["jigsaw"] = nn.Linear(width, grid**4)  # one grid**2-way classifier per tile
        for name in ("inpainting", "masked_pixels"):
            if name in self.settings:
                self.heads[name] = PatchDecoder(token_width, patch_size)
        if "landmark_heatmap" in self.settings:
            self.heads["landmark_heatmap"] = nn.Linear(token_width, config.num_landmarks)
        if "components" in self.settings:  # per component: box (x0, y0, x1, y1) and a presence logit
            self.heads["components"] = nn.Linear(width, 5 * len(COMPONENTS))
        self.image_size = tuple(backbone.image_size)
        self.patch_size = patch_size

    def forward(self, etfuser: nn.Module, pixel_values: torch.Tensor, landmarks: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        spec = etfuser.config.backbone

        def backbone(images: torch.Tensor):
            outputs = etfuser.backbone(pixel_values=prepare_encoder_inputs(images, spec), return_dict=True)
            return pool_tokens(select_feature_tokens(outputs, spec, "backbone")), outputs.last_hidden_state

        needs_landmarks = {"landmark_heatmap", "components"} & set(self.settings)
        if needs_landmarks and landmarks is None:
            raise ValueError(f"auxiliary_tasks {sorted(needs_landmarks)} need `landmarks` (batch, 68, 2) in the batch.")
        losses: dict[str, torch.Tensor] = {}
        target = F.interpolate(pixel_values, size=self.image_size, mode="bilinear", align_corners=False)
        grid = (self.image_size[0] // (self.patch_size or 1), self.image_size[1] // (self.patch_size or 1))

        if "jigsaw" in self.settings:
            tiles = self.settings["jigsaw"]["grid"] ** 2
            shuffled, labels = jigsaw_puzzle(pixel_values, self.settings["jigsaw"]["grid"])
            pooled, _ = backbone(shuffled)
            logits = self.heads["jigsaw"](pooled).view(-1, tiles, tiles)
            losses["jigsaw"] = F.cross_entropy(logits.reshape(-1, tiles), labels.reshape(-1))
        for name, make_mask in (("inpainting", lambda: square_region_mask(target.shape, self.settings["inpainting"]["region"])),
                                ("masked_pixels", lambda: patch_mask(target.shape, self.patch_size,
                                                                      self.settings["masked_pixels"]["ratio"]))):
            if name not in self.settings:
                continue
            mask = make_mask().to(target.device)
            _, tokens = backbone(target.masked_fill(mask, 0.0))
            reconstruction = self.heads[name](tokens[:, -grid[0] * grid[1]:], grid)
            weight = mask.expand_as(target).to(target.dtype)
            losses[name] = ((reconstruction - target).abs() * weight).sum() / weight.sum().clamp_min(1.0)
            if name == "inpainting" and self.settings[name]["perceptual_weight"] and etfuser.config.priors:
                losses[name] = losses[name] + self.settings[name]["perceptual_weight"] * perceptual_loss(
                    etfuser, reconstruction, target)
        if needs_landmarks:
            landmarks = landmarks.to(pixel_values.dtype)
            if landmarks.shape[1:] != (68, 2):
                raise ValueError(f"landmarks must have shape (batch, 68, 2) in [0, 1], got {tuple(landmarks.shape)}.")
            boxes = component_boxes(landmarks)
            images, presence = pixel_values, None
            if "components" in self.settings:  # one pass on the erased view serves both landmark tasks
                images, presence = erase_components(pixel_values, boxes, self.settings["components"]["erase_probability"])
            pooled, tokens = backbone(images)
            if "landmark_heatmap" in self.settings:
                logits = self.heads["landmark_heatmap"](tokens[:, -grid[0] * grid[1]:])  # (B, N, K)
                column = (landmarks[..., 0] * grid[1]).long().clamp(0, grid[1] - 1)
                row = (landmarks[..., 1] * grid[0]).long().clamp(0, grid[0] - 1)
                losses["landmark_heatmap"] = F.cross_entropy(logits.transpose(1, 2).reshape(-1, logits.shape[1]),
                                                             (row * grid[1] + column).reshape(-1))
            if "components" in self.settings:
                outputs = self.heads["components"](pooled).view(-1, len(COMPONENTS), 5)
                # a hidden component's box is still implied by the rest of the face, so it is regressed everywhere
                box_loss = F.smooth_l1_loss(torch.sigmoid(outputs[..., :4]), boxes, beta=0.05)
                losses["components"] = box_loss + F.binary_cross_entropy_with_logits(outputs[..., 4], presence)
        return losses

    def weighted_sum(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.settings[name]["weight"] * loss for name, loss in losses.items())


def perceptual_loss(etfuser: nn.Module, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between the first frozen prior's features of the reconstruction and of the original (gradients reach the
    reconstruction, never the prior's weights)."""
    name, spec = next(iter(etfuser.config.priors.items()))
    prior = etfuser.priors[name]
    with torch.no_grad():
        reference = select_feature_tokens(prior(pixel_values=prepare_encoder_inputs(target, spec), return_dict=True),
                                          spec, name)
    features = select_feature_tokens(prior(pixel_values=prepare_encoder_inputs(reconstruction, spec), return_dict=True),
                                     spec, name)
    return F.mse_loss(features, reference)


__all__ = ["COMPONENTS", "ETFuserAuxiliaryTasks", "component_boxes", "erase_components", "jigsaw_puzzle", "patch_mask",
           "square_region_mask"]
