"""The validation ladder: climb parse .. backward for each emitted block, in the sandbox."""

from nnrag.ladder._validate import LADDER_VERSION, Outcome, cache_key, validate

__all__ = ["LADDER_VERSION", "Outcome", "cache_key", "validate"]
