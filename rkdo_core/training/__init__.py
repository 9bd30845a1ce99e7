"""Training layer: train one run, evaluate its checkpoints (metrics, common yardstick,
FLOPs of a step), and the per-run diagnostics of 04_figures."""
