"""Data: sources → phrase table → split (see sst/data/pipeline.py), and the SST-5 label set."""

LABELS = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")
N_CLASSES = len(LABELS)
