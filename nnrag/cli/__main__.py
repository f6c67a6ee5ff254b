"""``python -m nnrag.cli``."""

from nnrag.cli import main

main()
