"""The tasks of the paper's comparison: what is predicted, how it is scored, and which pretrained network is the
canonical task model (the other converted face networks are its frozen priors).

    expression  -> the FER2013 mini-Xception, fine-tuned; priors: recognition, landmarks, age
    age_group   -> the dlib age net, fine-tuned; priors: recognition, landmarks, expression
    landmarks   -> the face-api 68-point net, fine-tuned (NME, lower is better); priors: recognition, age, expression

A user dataset's task is one of its columns, of the type its reader declares (`data.targets.column_task_type`;
`--task-type COLUMN=TYPE` overrides), and each type has its canonical network (`dataset_task`):

    single-label, expression classes (RAF-DB, FER2013, AffectNet) -> the FER net: it was trained on these classes
        (AffectNet's contempt aside); accuracy and macro-F1
    single-label, other classes (UTKFace's gender, race)          -> the dlib age net: an RGB ResNet trained to read a
        demographic attribute from the whole face, where the FER net sees 64 px grey crops trained for expression only
    multi-label attributes (CelebA's 40)                          -> the face-api recognition net: identity
        embeddings carry appearance attributes (hair, glasses, beard, sex, age), which is why CelebA's own authors
        pre-trained their attribute net on identities (Liu et al., ICCV 2015); mean accuracy and macro-F1 over the
        attributes
    regression in years (UTKFace's age)                           -> the dlib age net, read out as its own expected
        age over its 81 bins, its head starting as the net's own classifier; MAE (L1 loss: the metric). The bins
        end at 80: an older face (UTKFace goes to 116) is predicted 80 at most
    other regression (AffectNet's valence, arousal)               -> the FER net (affect is read from expression);
        RMSE and CCC (MSE loss)
    landmarks (AffectNet's 68, CelebA's 5)                        -> the face-api landmark net; inter-ocular NME
        (inter-pupil for 5 points)

Every other converted network is a frozen prior, as on the synthetic tasks. None of these choices was measured on
real data here: they follow what each network was trained on.

`--canonical` replaces the canonical model with any HF vision `AutoModel` folder (ViT, ConvNeXt, ...), or with
`scratch-vit`, a small ViT trained from scratch (an ablation, never the default: on a few thousand images it learns
almost nothing, which makes every comparison uninformative).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import ViTConfig

from ...data.label_aliases import names_expressions
from ...data.sources.base import ColumnSpec
from ...metrics import DEFAULT_METRICS, GREATER_IS_BETTER
from .objective import TaskObjective, apply_objectives
from .recipe_file import task_fields
from .rows import MAIN_ROW, Row

DEFAULT_PRIORS = ("face_recognition", "face_landmarks", "age", "expression")
SCRATCH_CANONICAL = "scratch-vit"
DEFAULT_LEARNING_RATE = 3e-3


@dataclass(frozen=True)
class FaceTask:
    """One row group of the comparison.

    Args:
        name: the task's name in tables (`expression`, `age_group`, `landmarks`, or a user dataset's label column).
        column: the dataset column holding the target (class ids, multi-hot 0/1, values, or (K, 2) landmarks in
            [0, 1] of the image).
        problem_type: one of `data.targets.TASK_TYPES`: `"single_label_classification"`,
            `"multi_label_classification"`, `"regression"` or `"landmarks"`.
        canonical: the default canonical model: a converted prior's name, a model folder, or `scratch-vit`.
        learning_rate: the learning rate of the rows that fine-tune the canonical model, one for all of them so that
            no baseline is handicapped, chosen on validation for the synthetic default (docs/recipe.md).
        fusion: `ETFuserConfig` overrides of the default recipe for this task's et-fuser row, chosen on validation.
        row_learning_rates: `{row name: learning rate}` where a row's best rate on validation differs from
            `learning_rate` (`training/sweep.py`): ET-Fuser on the priors alone trains only new modules; a row with new
            modules beside the canonical model may train them faster than the canonical model (`row_overrides`).
        row_overrides: `{row name: ETFuserConfig overrides}` chosen with those rates, e.g.
            `backbone_learning_rate_scale` to keep the canonical model at `learning_rate`. `--learning-rate` replaces
            both mappings: one rate for every row.
        candidates_per_row: `{row name: number of settings tried on validation}` by the sweep that chose the rates
            (printed beside the task tables, so that unequal tuning would show); empty where nothing was swept.
        spatial: the best spatial setting of et-fuser on validation among grid sizes and canonical tokens
            (`training/sweep.py --grid-sizes`): `prior_feature` (`recipe.build_task_model`) and, for a row with an
            ensemble token, `fusion_mode`; what the spatial rows read (`Row.tokens`: et-fuser-spatial, and
            concat-mlp-grid over the same tokens). Empty: no spatial setting, one pooled vector per prior.
        main_tokens: what et-fuser itself reads, whichever was better on validation: `"pooled"` (one vector per
            prior) or `"spatial"` (`spatial`).
        row_tokens: `{row name: {"prior_feature": ...}}` for a row that chose its own prior tokens on validation as
            et-fuser does (concat-mlp: pooled, or its own best grid among the same candidates, which need not be
            et-fuser's); a row not named reads pooled priors. Kept under `--learning-rate`, like `main_tokens`: a
            token choice is not a rate.
        metric_names: the metrics the task's table reports, the first being the one runs are selected on and
            compared by; empty: the problem type's (`metrics.DEFAULT_METRICS`).
        label_names: multi-label: the name of each entry of the 0/1 vector (single-label names come from the
            column's ClassLabel).
        num_landmarks: landmarks: the points per face.
        units: regression: what the values are (`"years"`), for the tables.
        loss: the head's loss (`ETFuserConfig.regression_loss` / `landmark_loss`); None: the config's default.
        binned_readout: regression read out as the canonical age net reads age, the expectation over its bins,
            its head starting as that net's own classifier (`recipe.build_task_model`).
        objective: class weights, label smoothing and the sampler every row of the task trains with, and the
            validation metric selecting checkpoints and candidates (`objective.TaskObjective`).
    """

    name: str
    column: str
    problem_type: str
    canonical: str
    learning_rate: float = DEFAULT_LEARNING_RATE
    fusion: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    row_learning_rates: Mapping[str, float] = dataclasses.field(default_factory=dict)
    row_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    candidates_per_row: Mapping[str, int] = dataclasses.field(default_factory=dict)
    spatial: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    main_tokens: str = "pooled"
    row_tokens: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    metric_names: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()
    num_landmarks: int = 68
    units: str | None = None
    loss: str | None = None
    binned_readout: bool = False
    objective: TaskObjective = TaskObjective()

    def __post_init__(self):
        if self.problem_type not in DEFAULT_METRICS:
            raise ValueError(f"{self.name}: problem_type must be one of {list(DEFAULT_METRICS)}, got "
                             f"{self.problem_type!r}.")
        unknown = [name for name in self.metric_names if name not in GREATER_IS_BETTER]
        if unknown:
            raise ValueError(f"{self.name}: unknown metrics {unknown}; expected some of {list(GREATER_IS_BETTER)}.")
        if self.main_tokens not in ("pooled", "spatial"):
            raise ValueError(f"main_tokens: expected 'pooled' or 'spatial', got {self.main_tokens!r}.")
        if self.main_tokens == "spatial" and not self.spatial:
            raise ValueError(f"{self.name}: main_tokens='spatial' needs a spatial setting (`spatial`), got none.")

    def row_learning_rate(self, row: str) -> float:
        """The learning rate `row` trains with on this task."""
        return self.row_learning_rates.get(row, self.learning_rate)

    def tuned_learning_rate(self, row: Row) -> float:
        """The rate `row` trains with: its own where one was chosen for it (a recipe file's), else the rate of the
        row it is tuned as."""
        return self.row_learning_rate(row.name if row.name in self.row_learning_rates else row.tuning)

    def tuned_overrides(self, row: Row) -> dict[str, Any]:
        """What was chosen on validation for `row`: the overrides of the row it is tuned as, and over them its own
        where a recipe file chose for it by name (a swept concat-mlp-grid keeps its own augmentation, not
        concat-mlp's)."""
        own = self.row_overrides.get(row.name, {}) if row.name != row.tuning else {}
        return {**self.row_overrides.get(row.tuning, {}), **own}

    @property
    def is_classification(self) -> bool:
        """Single-label classification: one class id per image (McNemar's test, a confusion matrix, class names
        matched by the alias table)."""
        return self.problem_type == "single_label_classification"

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics of the task's table, the headline first."""
        return self.metric_names or DEFAULT_METRICS[self.problem_type]

    @property
    def metric(self) -> str:
        """The headline test metric, which runs are selected on and compared by (e.g. accuracy; NME, lower is
        better)."""
        return self.metrics[0]

    @property
    def greater_is_better(self) -> bool:
        return GREATER_IS_BETTER[self.metric]

    @property
    def selection_metric(self) -> str:
        """The validation metric that selects each run's checkpoint, stops it early and picks a sweep's candidates
        (`--select-on`); by default the headline metric."""
        return self.objective.select_on or self.metric

    @property
    def scored_metrics(self) -> tuple[str, ...]:
        """The table's metrics and the selection metric: what every run reports on validation and test."""
        return tuple(dict.fromkeys(self.metrics + (self.selection_metric,)))

    @property
    def interocular_indices(self) -> tuple[int, int]:
        """Landmarks: the two points whose distance normalises NME (`INTEROCULAR_POINTS`)."""
        if self.num_landmarks not in INTEROCULAR_POINTS:
            raise ValueError(f"{self.name}: no inter-ocular points known for {self.num_landmarks} landmarks; NME is "
                             f"defined here for {sorted(INTEROCULAR_POINTS)} points.")
        return INTEROCULAR_POINTS[self.num_landmarks]

    def head_settings(self) -> dict[str, Any]:
        """`ETFuserConfig` settings of the task's head: its loss and, for landmarks, the points and the NME
        normaliser (the readout of `binned_readout` is set where the canonical model is loaded)."""
        if self.problem_type == "landmarks":
            return {"num_landmarks": self.num_landmarks, "interocular_indices": list(self.interocular_indices),
                    **({"landmark_loss": self.loss} if self.loss else {})}
        if self.problem_type == "regression":
            return {"num_labels": 1, **({"regression_loss": self.loss} if self.loss else {})}
        return {}


# NME's normaliser per landmark count: iBUG-68's outer eye corners; CelebA's five points start with the two eye
# centres (inter-pupil distance, as CelebA landmark papers report it).
INTEROCULAR_POINTS = {68: (36, 45), 5: (0, 1)}


# Learning rates from the validation sweeps of the canonical model alone (docs/recipe.md): the small FER net gains up
# to 1.2e-2; the dlib age net (a 2.7M-parameter ResNet) diverges there and is best at 3e-3. For landmarks the priors
# carry far more than the canonical net's pooled feature, and the zero-gated addition lets them in too slowly:
# concatenation before the head was best on validation (NME 0.062 against 0.116 gated, 0.106 canonical alone).
# Per row (training/sweep.py, docs/recipe.md): ET-Fuser on the priors alone is best at 1e-3 on every task (at
# expression's 1.2e-2 it stayed at chance); concat-mlp on expression, and both et-fuser and concat-mlp on landmarks,
# are best with their new modules at 3x the canonical model's rate; every other row is best at the task's rate.
# The integrity sweep (one grid of 4 candidates for every compared row, docs/recipe.md) reran all three tasks: the
# canonical row, offered a faster head for the first time, is best with it everywhere (on landmarks with the canonical
# net at 9e-3 and its head at 2.7e-2, the corner of the grid: 0.081 NME against 0.110 at the old 3e-3); the other rows
# keep the settings above.
# Parity (issue 34, item 5; docs/recipe.md, "The parity sweep"): every compared row is chosen among 10 settings on
# validation, on the current crops. Et-fuser and concat-mlp each among 7 rates on pooled priors (the canonical model
# at r/3, r and 3r with the new modules at 1x and 3x, and at r with them at 9x), then 3 grids (2, 4 and each prior's
# own map) at the rate chosen, each reading whichever of pooled or grid tokens was best for itself (`main_tokens`,
# `row_tokens`); the canonical model among the same 7 rates and 3 more (r/9 at 1x and 3x, r/3 at 9x). The rates moved
# with the per-network crops: on age group every row is best with the canonical model at r/3 = 1e-3 (0.81-0.85
# against 0.71-0.77 at the old 3e-3), and the new modules at 9x win on expression and landmarks. et-fuser-spatial /
# et-fuser-pooled and concat-mlp-grid / concat-mlp-pooled are the other token layout of their row at its tuned rate,
# concat-mlp-grid on the grid et-fuser-spatial reads.
NATIVE_GRIDS = {"face_recognition": {"feature": "grid", "grid_size": 2}, "face_landmarks": {"feature": "grid", "grid_size": 7},
                "age": {"feature": "grid", "grid_size": 3}, "expression": {"feature": "grid", "grid_size": 4}}
PARITY_CANDIDATES = {"canonical": 10, "concat-mlp": 10, "concat-mlp-pooled": 10, "concat-mlp-grid": 10, "et-fuser": 10,
                     "et-fuser-spatial": 10, "et-fuser-pooled": 10, "et-fuser-priors-only": 4}
# The augmentation sweeps at the parity rates (docs/recipe.md, "The augmentation sweep"): the same 4 candidates (none,
# light K=2, light K=4, standard K=4) for et-fuser, canonical, concat-mlp and concat-mlp-grid on every task, 3 seeds
# (recipes/synthetic-augmentation*.json: each row's choice). Their choices render 4 views per training image, and the
# main job with them took 21 minutes cold, over its 15-minute budget; with each row's best among none and light K=2
# (the image and its mirror: 3 rows of 12 took K=2) it took 941 s and 905 s cold on idle cores, at the budget's edge.
# So the defaults train without views (`MAIN_JOB_MAX_VIEWS`), and `--recipe recipes/synthetic-augmentation.json`
# trains the choices themselves. A row tuned as another (et-fuser-spatial, et-fuser-pooled, concat-mlp-pooled) trains
# with that row's setting.
MAIN_JOB_MAX_VIEWS = 1
AUGMENTED_CANDIDATES = {row: count + (0 if row == "et-fuser-priors-only" else 4)
                        for row, count in PARITY_CANDIDATES.items()}


def augmented(level: str, views: int) -> dict[str, Any]:
    """The row override of an augmentation chosen on validation: `level` with `views` cached views per image."""
    return {"augmentation": {"level": level, "views": views}}


PRIORS_ONLY_LEARNING_RATE = {"et-fuser-priors-only": 1e-3}
CANONICAL_AT_A_THIRD = {"backbone_learning_rate_scale": 1 / 3}
CANONICAL_AT_A_NINTH = {"backbone_learning_rate_scale": 1 / 9}
SYNTHETIC_TASKS = {
    "expression": FaceTask("expression", "expression", "single_label_classification", "expression", 1.2e-2,
                           row_learning_rates={**PRIORS_ONLY_LEARNING_RATE, "et-fuser": 0.108, "canonical": 0.108,
                                               "concat-mlp": 3.6e-2},
                           row_overrides={"et-fuser": CANONICAL_AT_A_NINTH, "canonical": CANONICAL_AT_A_NINTH,
                                          "concat-mlp": CANONICAL_AT_A_THIRD},
                           candidates_per_row=AUGMENTED_CANDIDATES,
                           spatial={"prior_feature": {"feature": "grid", "grid_size": 2}}),
    "age_group": FaceTask("age_group", "age_group", "single_label_classification", "age", 3e-3,
                          row_learning_rates={**PRIORS_ONLY_LEARNING_RATE, "et-fuser": 3e-3, "canonical": 1e-3,
                                              "concat-mlp": 1e-3},
                          row_overrides={"et-fuser": CANONICAL_AT_A_THIRD},
                          candidates_per_row=AUGMENTED_CANDIDATES,
                          spatial={"prior_feature": {"feature": "grid", "grid_size": 4}}, main_tokens="spatial",
                          row_tokens={"concat-mlp": {"prior_feature": {"feature": "grid", "grid_size": 2}}}),
    "landmarks": FaceTask("landmarks", "landmarks", "landmarks", "face_landmarks", 3e-3,
                          {"fusion_mode": "concat_before_head"},
                          row_learning_rates={**PRIORS_ONLY_LEARNING_RATE, "et-fuser": 2.7e-2, "concat-mlp": 2.7e-2,
                                              "canonical": 2.7e-2},
                          row_overrides={"et-fuser": CANONICAL_AT_A_NINTH, "concat-mlp": CANONICAL_AT_A_NINTH,
                                         "canonical": CANONICAL_AT_A_NINTH},
                          candidates_per_row=AUGMENTED_CANDIDATES, spatial={"prior_feature": NATIVE_GRIDS},
                          main_tokens="spatial"),
}


def row_recipe(row: Row, task: FaceTask, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The overrides of the default recipe that `row` trains with on `task` (`recipe.build_task_model` keywords):
    the task's fusion (for et-fuser and rows that set no fusion mode of their own), what was chosen on validation for
    the row it is tuned as, the tokens chosen for the row itself (`FaceTask.row_tokens`), the task's spatial setting
    for a row that reads it (its fusion mode only where the row sets none), then the row's own definition and
    `overrides` (a run's, or a sweep candidate's), each over the former."""
    own_mode = row.overrides.get("fusion_mode")
    fusion = task.fusion if row.name == MAIN_ROW or own_mode is None else {}
    spatial = {}
    if row.reads_spatial(task.main_tokens):
        spatial = {key: value for key, value in task.spatial.items() if key != "fusion_mode" or own_mode is None}
    return {**fusion, **task.tuned_overrides(row), **task.row_tokens.get(row.name, {}), **spatial, **row.overrides,
            **(overrides or {})}


def dataset_task(column: str, problem_type: str, spec: ColumnSpec | None = None,
                 label_names: Sequence[str] | None = None) -> FaceTask:
    """The task of a user dataset's `column` of `problem_type` (see the module doc for the canonical network and
    metrics of each type): `spec` is the reader's description of the column (its units, landmark count, attribute
    names), `label_names` the classes of a single-label column or, where the reader named none, the entries of a
    multi-label one."""
    spec = spec or ColumnSpec(problem_type)
    if problem_type == "single_label_classification":
        canonical = "expression" if label_names is None or names_expressions(label_names) else "age"
        return FaceTask(column, column, problem_type, canonical)
    if problem_type == "multi_label_classification":
        return FaceTask(column, column, problem_type, "face_recognition",
                        label_names=tuple(spec.names or label_names or ()))
    if problem_type == "regression":
        if spec.units == "years":
            return FaceTask(column, column, problem_type, "age", metric_names=("mae",), units="years", loss="l1",
                            binned_readout=True)
        return FaceTask(column, column, problem_type, "expression", metric_names=("rmse", "ccc"), units=spec.units,
                        loss="mse")
    if problem_type == "landmarks":
        return FaceTask(column, column, problem_type, "face_landmarks", num_landmarks=spec.num_points or 68)
    raise ValueError(f"{column}: problem_type must be one of {list(DEFAULT_METRICS)}, got {problem_type!r}.")


def resolve_tasks(names: Sequence[str], synthetic: bool, canonical: str | None = None,
                  learning_rate: float | None = None, dataset_tasks: Mapping[str, FaceTask] | None = None,
                  recipe: Mapping[str, Any] | None = None,
                  objectives: Mapping[str | None, TaskObjective] | None = None) -> list[FaceTask]:
    """`--tasks` as `FaceTask`s. On the synthetic default the names are `SYNTHETIC_TASKS` keys; on a user dataset
    each name is a column, its task `dataset_tasks[name]` (`dataset_task`, from the data) or, where not given, a
    single-label column with the FER net as canonical model. `canonical` and `learning_rate` replace the tasks' own
    where given (another canonical model drops the age net's binned readout: it has no bins); a `recipe` file
    (`recipe_file.read_recipe`) replaces each task's row rates and settings with what its sweep chose; `objectives`
    (`objective.parse_objective_arguments`) set the tasks' class weights, smoothing, sampler and selection metric."""
    tasks = []
    for name in names:
        if synthetic:
            if name not in SYNTHETIC_TASKS:
                raise ValueError(f"--tasks: unknown synthetic task {name!r}; expected some of {list(SYNTHETIC_TASKS)}.")
            task = SYNTHETIC_TASKS[name]
        else:
            task = (dataset_tasks or {}).get(name) or FaceTask(name, name, "single_label_classification", "expression")
        if canonical is not None:
            task = dataclasses.replace(task, canonical=canonical, binned_readout=task.binned_readout and canonical == "age")
        if learning_rate is not None:
            task = dataclasses.replace(task, learning_rate=learning_rate, row_learning_rates={}, row_overrides={},
                                       candidates_per_row={})
        if recipe is not None:
            task = dataclasses.replace(task, **task_fields(recipe, task))
        tasks.append(task)
    return apply_objectives(tasks, objectives)


def small_vit_backbone(image_size: int = 112) -> ViTConfig:
    """The `scratch-vit` canonical model: a ViT-Tiny-width, 4-layer ViT/16, randomly initialised."""
    return ViTConfig(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=384,
                     image_size=image_size, patch_size=16)


def canonical_source(canonical: str, prior_dirs: Mapping[str, str | os.PathLike], image_size: int = 112) -> Any:
    """What `from_priors_pretrained(backbone=...)` takes for `canonical`: a converted prior's folder, a model folder
    or id as given, or the from-scratch ViT config."""
    if canonical == SCRATCH_CANONICAL:
        return small_vit_backbone(image_size)
    if canonical in prior_dirs:
        return prior_dirs[canonical]
    if canonical in DEFAULT_PRIORS:
        raise ValueError(f"--canonical {canonical!r} is a face prior that was not converted; add it to --priors.")
    if not Path(canonical).is_dir():
        raise ValueError(f"--canonical: {canonical!r} is neither a converted face prior {list(DEFAULT_PRIORS)}, "
                         f"{SCRATCH_CANONICAL!r}, nor a model folder (offline: hub ids need a local copy).")
    return canonical


def task_priors(task: FaceTask, priors: Sequence[str]) -> list[str]:
    """The frozen priors of `task`: the selected face networks other than its canonical model."""
    return [name for name in priors if name != task.canonical]
