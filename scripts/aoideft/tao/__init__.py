"""The TAO backend's pieces: NVIDIA's Visual ChangeNet run in the TAO PyTorch image.

- ``runtime``: the resolved ``tao:`` config, mounts, command lines (docker / apptainer), host checks;
- ``specs``: the spec TAO gets per job (results_dir, datasets, checkpoint), checked against TAO's
  schema of that action, and the documented GPU-memory batch-size rule;
- ``outputs``: TAO's ``status.json``, checkpoints and ``inference.csv`` read back into the files the
  embedded backend writes (``metrics.jsonl``, ``train_summary.json``, ``inference.csv``);
- ``preflight``: what the pre-flight checks for this backend.

``aoideft.backend.TaoBackend`` puts them together behind the same train/infer/embed methods.
"""
