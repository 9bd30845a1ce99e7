"""Runs layer: the papermill grid, its back-ends (local, Dask, SLURM), run locks,
`rkdo verify`, notebook execution and the results folder's HTML site. Torch-free."""
