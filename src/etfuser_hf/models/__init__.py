"""The remote-code set: ET-Fuser's configuration (with its table of fusion modes), modeling (with its input checks and
shared losses) and image processor, the face-prior configurations and models, the training-only auxiliary heads and
the multi-task model.

These files are flat in one folder because `save_pretrained` copies them next to the weights and the Hub's
`trust_remote_code` loader imports them from that one folder; nothing here imports from outside `models/`.
"""
