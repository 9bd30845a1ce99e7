"""Tools layer: `rkdo bench` (speed of a training step) and `rkdo flops` (what the
recursion costs)."""
