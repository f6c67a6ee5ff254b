"""What several benchmarks measure on: where LEMUR's export lies (``../shared/data/lemur``
next to the checkout; every benchmark takes ``--lemur`` to point elsewhere) and the corpus
models the real-training benchmarks train, so they report on the same six networks."""

from __future__ import annotations

from pathlib import Path

#: LEMUR's export folder (models.jsonl.gz, stats.jsonl.gz), beside the repository.
LEMUR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "lemur"
#: Six corpus models of different kinds: MLP, small CNN, recurrent, multi-scale, residual,
#: inverted-residual.
MODELS = ("mlp", "lenet5", "gru_classifier", "res2net_lite", "resnet8", "mobilenetv2_small")
