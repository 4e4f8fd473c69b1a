"""Model: sampling, metrics, LightningDataModule and LightningModule (no ClearML here)."""
