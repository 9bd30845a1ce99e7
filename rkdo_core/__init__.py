"""rkdo_core: the importable, tested core of the RKDO reproduction suite.

Everything the notebooks compute lives here; see ../shared/DESIGN.md for the layout.
"""

__version__ = "0.1.0"
