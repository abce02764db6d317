"""Face data: dataset loaders (one reader per source layout behind `load_face_dataset`), the synthetic face
generator (the offline default) and landmark-driven masked-face synthesis."""
