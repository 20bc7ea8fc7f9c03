"""dptrain: MoCo-style pretraining of the DiffusionPrint extractor."""

__version__ = "0.1.0"
