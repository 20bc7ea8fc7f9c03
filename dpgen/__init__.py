"""dpgen: build DiffusionPrint's inpainting patch datasets as Arrow datasets."""

__version__ = "0.1.0"
