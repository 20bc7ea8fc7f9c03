"""dpeval: evaluate DiffusionPrint features (linear probe, spectra, TGIF localization)."""

__version__ = "0.1.0"
