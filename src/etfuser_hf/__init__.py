"""ET-Fuser for Hugging Face Transformers: an ensemble token learned from frozen task-driven priors.

Importing the package registers its configs, models and image processor with the Auto classes, so
`AutoModel.from_pretrained(folder)` works for saved ET-Fuser folders and converted face priors alike.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)

# the class itself: `transformers.AutoVideoProcessor` is a placeholder that needs torchvision just to be registered with
from transformers.models.auto.video_processing_auto import AutoVideoProcessor

from .models.configuration_etfuser import EncoderSpec, ETFuserConfig
from .models.configuration_face_priors import FACE_PRIOR_CONFIG_CLASSES
from .models.image_processing_etfuser import ETFuserImageProcessor
from .models.modeling_etfuser import (
    ETFuserForImageClassification,
    ETFuserForLandmarkDetection,
    ETFuserImageClassifierOutput,
    ETFuserLandmarkOutput,
    ETFuserModel,
    ETFuserModelOutput,
    ETFuserPreTrainedModel,
    compute_task_loss,
    normalized_mean_error,
)
from .models.modeling_face_priors import FACE_PRIOR_MODEL_CLASSES
from .models.modeling_multitask import (
    ETFuserForMultiTaskFaceAnalysis,
    ETFuserMultiTaskOutput,
)

__version__ = "0.1.0"


def _register() -> None:
    """Registers every class with the Auto API (idempotent: re-import and reload are safe) and records the auto_map
    that lets a saved folder load with `trust_remote_code=True` where this package is not installed."""
    AutoConfig.register(ETFuserConfig.model_type, ETFuserConfig, exist_ok=True)
    AutoModel.register(ETFuserConfig, ETFuserModel, exist_ok=True)
    AutoModelForImageClassification.register(ETFuserConfig, ETFuserForImageClassification, exist_ok=True)
    AutoImageProcessor.register(ETFuserConfig, slow_image_processor_class=ETFuserImageProcessor, exist_ok=True)
    # ET-Fuser has no video processor, and registering none says so: the pipeline probes for one, derives
    # "ETFuserVideoProcessor" from the image processor's auto_map, and without a local entry for ETFuserConfig it would
    # ask whether to run the folder's code (`input()`, which blocks a notebook). With it, the probe resolves locally
    # and finds nothing, as for any image-only model of transformers.
    AutoVideoProcessor.register(ETFuserConfig, video_processor_classes={}, exist_ok=True)
    for model_type, config_class in FACE_PRIOR_CONFIG_CLASSES.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, FACE_PRIOR_MODEL_CLASSES[model_type], exist_ok=True)

    ETFuserConfig.register_for_auto_class()
    ETFuserModel.register_for_auto_class("AutoModel")
    ETFuserForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    ETFuserForLandmarkDetection.register_for_auto_class("AutoModelForKeypointDetection")
    ETFuserForMultiTaskFaceAnalysis.register_for_auto_class("AutoModelForImageClassification")
    ETFuserImageProcessor.register_for_auto_class("AutoImageProcessor")


_register()


def __getattr__(name: str):
    # `etfuser_hf.analyze` pulls in pandas, PyAV and onnxruntime: only when it is first used
    if name == "analyze":
        from .analysis.pipeline import analyze

        return analyze
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "EncoderSpec",
    "ETFuserConfig",
    "ETFuserImageProcessor",
    "ETFuserPreTrainedModel",
    "ETFuserModel",
    "ETFuserForImageClassification",
    "ETFuserForLandmarkDetection",
    "ETFuserForMultiTaskFaceAnalysis",
    "ETFuserMultiTaskOutput",
    "ETFuserModelOutput",
    "ETFuserImageClassifierOutput",
    "ETFuserLandmarkOutput",
    "compute_task_loss",
    "normalized_mean_error",
    "FACE_PRIOR_CONFIG_CLASSES",
    "FACE_PRIOR_MODEL_CLASSES",
    "analyze",
]
