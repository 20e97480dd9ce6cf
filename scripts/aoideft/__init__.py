"""aoideft: the AOI three-phase training pipeline (AutoML -> DEFT -> AutoML) and its embedded model."""

__version__ = "0.1.0"
