"""PyTorch re-implementations of the real, converted face priors."""

FACE_PRIOR_MODEL_CLASSES: dict[str, type] = {}
