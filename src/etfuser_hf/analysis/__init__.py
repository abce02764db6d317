"""Face analysis: images, folders and videos in, faces detected, aligned and run through a fused ET-Fuser model out.

`media.py` (inputs: suffixes, opening images, folder and video expansion), `saved_model.py` (the one model loader),
`pipeline.py` (`FaceAnalyzer`, the detect -> align -> predict path, and `analyze`), `table.py` (the table's columns
and how one chunk becomes its rows), `backends.py` (the graph it runs, in PyTorch or onnxruntime), `extras.py` (the
columns from priors run beside the fused model: `tracking.py` for who is who, `pose.py` for head pose),
`attention_maps.py` (where the ensemble token looks, drawn on the face), `memory.py` (the heap while a long run
streams), `parts.py` (the table written chunk by chunk, resumable) and `report.py` (what to do with the table).
`etfuser predict`, `etfuser analyze` and the demo in `hub/` all go through `FaceAnalyzer`. The modules are imported on
use: pandas, PyAV and onnxruntime load only when an analysis runs.
"""
