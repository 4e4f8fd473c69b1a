"""sst: fine-tune BERT-like encoders on SST-5 with Lightning; tracked and replayed via ClearML."""

__version__ = "0.1.0"
