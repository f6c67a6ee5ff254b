"""The single version source (read by pyproject and by the emitted-module header)."""

__version__ = "0.1.0"
