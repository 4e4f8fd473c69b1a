"""Data: sources → phrase table → split (see sst/data/pipeline.py)."""
