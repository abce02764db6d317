"""One run: one model trained with one seed by the Trainer, and what is measured of it."""
