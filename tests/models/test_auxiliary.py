"""Training-only auxiliary tasks (auxiliary.py): input views, head shapes and losses, weights, and their absence from
inference saves of the multi-task model. (test_companion_features.py covers the classifier's side.)"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_etfuser_config
from safetensors import safe_open

from etfuser_hf import ETFuserForImageClassification, ETFuserForMultiTaskFaceAnalysis
from etfuser_hf.models.modeling_auxiliary import (
    COMPONENTS,
    component_boxes,
    erase_components,
    jigsaw_puzzle,
    patch_mask,
    square_region_mask,
)

TASKS = {"expression": {"problem_type": "single_label_classification", "num_labels": 7},
         "mask": {"problem_type": "single_label_classification", "num_labels": 2}}


def faces_landmarks(batch: int) -> torch.Tensor:
    """(batch, 68, 2) plausible landmarks in [0, 1]: a frontal face with small random shifts."""
    from etfuser_hf.data.mask_synthesis import mean_face_landmarks

    base = torch.tensor(mean_face_landmarks(), dtype=torch.float32)
    return (base + 0.02 * torch.randn(batch, 1, 2)).clamp(0.01, 0.99)


@pytest.mark.parametrize("grid", [2, 3])
def test_jigsaw_labels_are_permutations_seeded_by_the_generator(grid):
    images = torch.rand(4, 3, 32, 32)
    first = jigsaw_puzzle(images, grid, torch.Generator().manual_seed(1))
    again = jigsaw_puzzle(images, grid, torch.Generator().manual_seed(1))
    torch.testing.assert_close(first[0], again[0])
    assert torch.equal(first[1], again[1])
    assert (first[1].sort(dim=1).values == torch.arange(grid * grid)).all()
    # putting every tile back where its label says restores the (resized) image
    tile = 32 // grid
    shuffled, labels = first
    tiles = shuffled.unfold(2, tile, tile).unfold(3, tile, tile).permute(0, 2, 3, 1, 4, 5).reshape(4, grid * grid, 3, tile, tile)
    restored = torch.empty_like(tiles)
    restored[torch.arange(4)[:, None], labels] = tiles
    restored = restored.reshape(4, grid, grid, 3, tile, tile).permute(0, 3, 1, 4, 2, 5).reshape(4, 3, grid * tile, grid * tile)
    original = torch.nn.functional.interpolate(images, size=(grid * tile,) * 2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(restored, original)


def test_region_and_patch_masks():
    region = square_region_mask((3, 3, 32, 32), 0.25, torch.Generator().manual_seed(0))
    assert region.shape == (3, 1, 32, 32) and (region.sum(dim=(1, 2, 3)) == 64).all()
    patches = patch_mask((2, 3, 32, 32), 8, 0.5, torch.Generator().manual_seed(0))
    blocks = patches.view(2, 1, 4, 8, 4, 8)
    assert (blocks.all(dim=(3, 5)) == blocks.any(dim=(3, 5))).all()  # whole 8x8 patches only


def test_erased_components_are_hidden_and_labelled_absent():
    torch.manual_seed(0)
    images, landmarks = torch.rand(6, 3, 32, 32), faces_landmarks(6)
    boxes = component_boxes(landmarks)
    assert boxes.shape == (6, len(COMPONENTS), 4)
    assert (boxes[..., 2:] >= boxes[..., :2]).all()
    erased, presence = erase_components(images, boxes, 0.5, torch.Generator().manual_seed(3))
    assert presence.shape == (6, 4) and 0 < presence.sum() < 24
    for b in range(6):
        for c in range(4):
            x0, y0, x1, y1 = (boxes[b, c] * 32).tolist()
            centre = erased[b, :, int((y0 + y1) / 2), int((x0 + x1) / 2)]
            hidden = torch.allclose(centre, images[b].mean(dim=(1, 2)))
            assert hidden == (presence[b, c] == 0), (b, c)
    untouched, all_present = erase_components(images, boxes, 0.0)
    assert torch.equal(untouched, images) and (all_present == 1).all()


@pytest.mark.parametrize("name, settings", [
    ("jigsaw", {"grid": 2}), ("jigsaw", {"grid": 3}), ("inpainting", {"perceptual_weight": 0.5}),
    ("masked_pixels", {"ratio": 0.5}), ("landmark_heatmap", {}), ("components", {"erase_probability": 0.5}),
])
def test_each_head_shape_and_loss(name, settings):
    torch.manual_seed(0)
    model = ETFuserForImageClassification(tiny_etfuser_config(auxiliary_tasks={name: settings})).train()
    heads = model.auxiliary.heads
    assert list(heads) == [name]
    head = heads[name]
    expected_outputs = {"jigsaw": settings.get("grid", 2) ** 4, "landmark_heatmap": 68, "components": 5 * 4}
    if name in expected_outputs:
        assert head.out_features == expected_outputs[name]
    else:  # a patch decoder: 3 * patch_size**2 pixels per token
        assert head.dense.out_features == 3 * model.config.backbone.config.patch_size ** 2
    losses = model.auxiliary(model.etfuser, torch.rand(2, 3, 32, 32), faces_landmarks(2))
    assert list(losses) == [name] and losses[name].ndim == 0 and torch.isfinite(losses[name])
    losses[name].backward()
    assert all(p.grad is not None for p in head.parameters())


def test_weights_scale_the_auxiliary_losses():
    torch.manual_seed(0)
    config = tiny_etfuser_config(auxiliary_tasks={"jigsaw": {"weight": 0.3}, "components": {"weight": 2.0}})
    model = ETFuserForImageClassification(config).train()
    losses = {"jigsaw": torch.tensor(1.5), "components": torch.tensor(0.25)}
    torch.testing.assert_close(model.auxiliary.weighted_sum(losses), torch.tensor(0.3 * 1.5 + 2.0 * 0.25))


def test_multitask_model_trains_auxiliary_tasks_and_saves_without_them(tmp_path):
    torch.manual_seed(0)
    config = tiny_etfuser_config(tasks=TASKS, auxiliary_tasks={"jigsaw": {"grid": 2}, "components": True})
    model = ETFuserForMultiTaskFaceAnalysis(config).train()
    pixel_values, landmarks = torch.rand(2, 3, 32, 32), faces_landmarks(2)
    labels = {"expression": torch.tensor([1, 4]), "mask": torch.tensor([0, 1])}
    outputs = model(pixel_values, labels=labels, landmarks=landmarks)
    assert outputs.loss > sum(config.tasks[t]["loss_weight"] * outputs.task_losses[t] for t in TASKS)
    outputs.loss.backward()
    assert model.auxiliary.heads["components"].weight.grad is not None
    model.eval()
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any(key.startswith("auxiliary.") for key in keys)
    reloaded = ETFuserForMultiTaskFaceAnalysis.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert reloaded.auxiliary is None
    with torch.no_grad():
        for task in TASKS:
            torch.testing.assert_close(reloaded(pixel_values).logits[task], model(pixel_values).logits[task])


@pytest.mark.parametrize("settings, message", [
    ({"jigsaw": {"weight": -1.0}}, r"auxiliary_tasks\['jigsaw'\].weight must be a number in \[0, inf\]"),
    ({"components": {"erase_probability": 1.5}}, r"auxiliary_tasks\['components'\].erase_probability must be"),
    ({"masked_pixels": {"ratio": "half"}}, r"auxiliary_tasks\['masked_pixels'\].ratio must be"),
    ({"inpainting": "yes"}, r"auxiliary_tasks\['inpainting'\] must be True or a dict"),
])
def test_bad_auxiliary_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_etfuser_config(auxiliary_tasks=settings)


def test_wrong_landmark_shape_is_explained():
    model = ETFuserForImageClassification(tiny_etfuser_config(auxiliary_tasks={"components": True})).train()
    with pytest.raises(ValueError, match=r"landmarks must have shape \(batch, 68, 2\)"):
        model(torch.rand(2, 3, 32, 32), labels=torch.tensor([0, 1]), landmarks=torch.rand(2, 5, 2))
