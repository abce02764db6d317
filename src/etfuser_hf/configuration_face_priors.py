"""Configurations of the real, converted face priors (see convert_face_priors.py)."""

FACE_PRIOR_CONFIG_CLASSES: dict[str, type] = {}
