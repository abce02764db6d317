"""Which ET-Fuser the Space serves: finding a model folder (a path, a Hub id, or by default the newest `runs/*/model`,
where the main job saves its model), loading it once with `etfuser_hf.analysis.saved_model.load_model` (the loader of
`analyze` and every `etfuser` command), the synthetic-data banner its run recorded, and the pretrained network its
canonical model was fine-tuned from.

Nothing here is inference: the page's answers all come from `FaceAnalyzer`, the path `etfuser_hf.analyze` runs
(face_report.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from etfuser_hf import ETFuserForImageClassification
from etfuser_hf.analysis.extras import EXTRA_PRIORS, EXTRAS
from etfuser_hf.analysis.pipeline import FaceAnalyzer
from etfuser_hf.analysis.saved_model import LoadedModel, default_model_dir, load_model
from etfuser_hf.hub.training_data import synthetic_training_data
from etfuser_hf.priors.convert_face_priors import ensure_face_priors
from etfuser_hf.priors.face_detection import MTCNN

MAIN_JOB_COMMAND = "pip install torch==2.13.0 -e . && python training/train.py"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PRETRAINED_PREFIX = "pretrained_"  # prior names of the reference model: its columns read `pretrained_<prior>_*`


class ModelNotFound(Exception):
    """No ET-Fuser the Space can serve where the picker points; the message says how to make one."""


@dataclass
class SpaceModel:
    """A loaded ET-Fuser and what the page says about it.

    folder: the saved model folder.
    analyzer: the detect -> align -> predict path over the model (`etfuser_hf.analyze`'s), in eval mode.
    banner: the synthetic-data warning recorded by its run (markdown), or None when the run was on real data or
        the folder carries no record.
    reference: the same path over a priors-only ET-Fuser whose only prior is the pretrained network the canonical
        model was fine-tuned from (frozen, as converted), so its table reports that network's own reading on the same
        aligned crops; None when the canonical model is not a converted face network, the model already has it as
        a prior, or the analysis reads it among its extras (the FER net: `fer_label`, `fer_probability_*`).
    canonical_prior: the name of the converted face network the canonical model started from, or None.
    """

    folder: Path
    analyzer: FaceAnalyzer
    banner: str | None
    reference: FaceAnalyzer | None
    canonical_prior: str | None

    def session(self) -> SpaceModel:
        """This model for one request: the same loaded networks, with analyzers of their own run state
        (`FaceAnalyzer.session`), so concurrent requests never mix each other's tracks."""
        return dataclasses.replace(self, analyzer=self.analyzer.session(),
                                   reference=None if self.reference is None else self.reference.session())

    @property
    def loaded(self) -> LoadedModel:
        return self.analyzer.loaded

    @property
    def model(self) -> ETFuserForImageClassification:
        return self.analyzer.loaded.model


def no_model_message(choice: str | None) -> str:
    where = f"`{choice}`" if choice else "`runs/*/model` (where the main job saves its model)"
    return (f"**No trained ET-Fuser model at {where}.** Make one with the main job (at most 15 minutes on 2 CPU cores, "
            f"on SYNTHETIC faces):\n\n```\n{MAIN_JOB_COMMAND}\n```\n\nthen pick it here, or start the Space with "
            f"`etfuser space --model <folder>` (any saved ET-Fuser task model folder: classification, multi-label, regression or landmarks).")


def model_choices(extra: str | None = None) -> list[str]:
    """The picker's entries: the start-up choice, then every `runs/*/model` (newest first: the first is the default,
    `default_model_dir()`)."""
    found = sorted(Path("runs").glob("*/model/config.json"), key=lambda path: path.stat().st_mtime, reverse=True)
    choices = [extra] if extra else []
    for folder in (path.parent for path in found):
        if str(folder) not in choices:
            choices.append(str(folder))
    return choices


def resolve_model_folder(choice: str | None) -> Path:
    """A local ET-Fuser folder for `choice` (a folder, a Hub id downloaded once, or None: `default_model_dir()`);
    ModelNotFound otherwise."""
    if not choice:
        try:
            return default_model_dir()
        except FileNotFoundError as missing:
            raise ModelNotFound(no_model_message(None)) from missing
    folder = Path(choice)
    if (folder / "config.json").is_file():
        return folder
    if not folder.exists() and HUB_ID.match(choice):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(choice))
        except Exception as error:  # noqa: BLE001 - offline, private or missing repos all mean "not here"
            raise ModelNotFound(f"**Could not fetch `{choice}` from the Hub** ({type(error).__name__}).\n\n"
                                + no_model_message(None)) from error
    raise ModelNotFound(no_model_message(choice))


def synthetic_banner(folder: Path) -> str | None:
    """The warning the run recorded for `folder` (markdown), or None: `synthetic_training_data` decides, the reader
    `etfuser analyze` and `etfuser predict` use for their stderr note."""
    description = synthetic_training_data(folder)
    return None if description is None else _banner_text(description)


def _banner_text(description: str) -> str:
    return ("**SYNTHETIC training data.** This model was trained on generated faces, not photographs of real people "
            f"({description}). Its answers on real photos are not validated; the pretrained networks' own readings "
            "are shown beside them.")


def _converted_prior_types() -> dict[str, str]:
    """Converted face network name -> its model_type, for the networks in the prior cache (MTCNN excluded)."""
    folders = ensure_face_priors()
    return {name: json.loads((path / "config.json").read_text())["model_type"]
            for name, path in folders.items() if name != "mtcnn"}


def pretrained_reference(
    loaded: LoadedModel, extras: Sequence[str] = EXTRAS
) -> tuple[str | None, ETFuserForImageClassification | None]:
    """(the converted network the canonical model was fine-tuned from, a priors-only ET-Fuser over its pretrained copy
    taking the same crops, when neither the model, as a frozen prior, nor the analysis with `extras` already reads
    that network)."""
    model = loaded.model
    backbone = model.config.backbone
    if backbone is None:
        return None, None
    kinds = _converted_prior_types()
    canonical = next((name for name, kind in kinds.items() if kind == backbone.config.model_type), None)
    if canonical is None:
        return None, None
    if any(spec.config.model_type == kinds[canonical] for spec in model.config.priors.values()):
        return canonical, None
    if "fer" in extras and canonical == EXTRA_PRIORS["fer"]:
        return canonical, None  # the FER net's own reading is in the table already: its fer_* columns
    reference = ETFuserForImageClassification.from_priors_pretrained(
        priors={PRETRAINED_PREFIX + canonical: ensure_face_priors(names=[canonical])[canonical]},
        fusion_mode="priors_only", image_size=loaded.crop_size, hidden_size=16, num_attention_heads=2,
        intermediate_size=32, num_labels=model.config.num_labels, id2label=dict(model.config.id2label),
        label2id=dict(model.config.label2id), problem_type=model.config.problem_type)
    return canonical, reference.eval()


_LOCK = threading.Lock()
_LOADED: dict[tuple[str, float], SpaceModel] = {}
_DETECTOR: list[MTCNN] = []


def load_space_model(choice: str | None) -> SpaceModel:
    """The model `choice` names, loaded once per folder and modification time (every request shares it)."""
    folder = resolve_model_folder(choice)
    key = (str(folder.resolve()), (folder / "config.json").stat().st_mtime)
    with _LOCK:
        if key not in _LOADED:
            try:
                loaded = load_model(folder)
            except (OSError, ValueError) as error:  # a multi-task model, a broken folder: said in the page
                raise ModelNotFound(f"**Cannot serve `{folder}`:** {error}") from error
            canonical, reference = pretrained_reference(loaded)
            detector = _face_detector()  # one MTCNN: the reference reads the faces the model's analyzer found
            _LOADED[key] = SpaceModel(
                folder, FaceAnalyzer(loaded, detector=detector), synthetic_banner(folder),
                None if reference is None else FaceAnalyzer(reference, detector=detector, extras=()), canonical)
        return _LOADED[key]


def _face_detector() -> MTCNN:
    """The converted facenet-pytorch MTCNN, loaded once (call under _LOCK)."""
    if not _DETECTOR:
        _DETECTOR.append(MTCNN.from_pretrained(ensure_face_priors(names=["mtcnn"])["mtcnn"]))
    return _DETECTOR[0]
