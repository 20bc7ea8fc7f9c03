"""Source images: list them, decode them to RGB, and cut them to a size the generators accept.

A source is a local image file or a row of a Hugging Face dataset. Every function here turns bad
input into a `SourceError` whose message starts with the file (or ``hf://`` reference), so a
build over thousands of files says which one broke and why.

Modules: `refs` (what a source is), `folders`, `hub` and `webdataset` (where sources live),
`listing` (`list_images`), `generated` (`list_generated`: each generator's images from a dataset
that mixes generators, e.g. Dragon), `decoding` (`load_image`), `preparing` (`prepare`),
`prompts` and `coco` (annotation files).
"""

from dpgen.sources.coco import load_coco_captions, load_coco_instances
from dpgen.sources.decoding import exif_orientation, load_image
from dpgen.sources.generated import GeneratedListing, GeneratedSource, list_generated
from dpgen.sources.listing import list_images
from dpgen.sources.preparing import Prepared, prepare, resized_size
from dpgen.sources.prompts import load_prompts
from dpgen.sources.refs import (
    HF_PREFIX,
    IMAGE_EXTENSIONS,
    SourceError,
    SourceRef,
    bundled_photos_dir,
)

__all__ = [
    "HF_PREFIX",
    "IMAGE_EXTENSIONS",
    "Prepared",
    "SourceError",
    "SourceRef",
    "GeneratedListing",
    "GeneratedSource",
    "bundled_photos_dir",
    "exif_orientation",
    "list_generated",
    "list_images",
    "load_coco_captions",
    "load_coco_instances",
    "load_image",
    "load_prompts",
    "prepare",
    "resized_size",
]
