"""rkdo_core: the importable, tested code of the RKDO reproduction suite.

The package is layered; a module imports only from its own layer and the layers below it
(``tests/test_architecture.py`` enforces this, and that there is no import cycle)::

    cli                      the `rkdo` command line
     └ tools/                bench (speed), flops (cost of the recursion)
        └ reporting/         statistics, tables, figures, claims, the aggregation (no torch)
           └ runs/           grid, back-ends, locks, verification, notebooks, HTML site
              └ training/    train, evaluate, yardstick, step FLOPs, per-run diagnostics
                 └ core      this folder's modules: the science a reader comes for

The core — config, datasets (facts), data, augment, model, losses, metrics, neutral
(yardsticks no method owns), mechanism (why the two losses differ), theory, layout (the
run folder's files), runio, errors — imports nothing outside itself. Reporting and
verification never import torch. See docs/architecture.md for the diagram, the data flow
and which notebook calls which module.
"""

__version__ = "0.1.0"
