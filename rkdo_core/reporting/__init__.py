"""Reporting layer: statistics, tables, figures, claims, the compute-matched view and the
single aggregation entry point (:func:`rkdo_core.reporting.aggregate.aggregate`). Torch-free."""
