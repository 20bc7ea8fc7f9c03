"""What a source image is: its reference, the error for unusable sources, the demo photographs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dpgen.errors import InputError
from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL

#: File suffixes listed as images (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
HF_PREFIX = "hf://"
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


class SourceError(InputError):
    """A source image, folder, dataset or prompt file cannot be used; the message says why."""


@dataclass(frozen=True)
class SourceRef:
    """Where one source image comes from.

    Attributes:
        image_id: stable id: the file's path relative to the listed folder without its suffix
            ('/'-joined), or ``"<dataset>:<index>"`` for a dataset row.
        path: local file path, ``"hf://<dataset>[/<config>]:<split>:<index>"``, or
            ``"<shard.tar>#<member>"`` for a WebDataset sample (`dpgen.sources.webdataset`).
        source_set: `dpgen.schema.SOURCE_REAL` or `dpgen.schema.SOURCE_GENERATED`.
        generator: name of the generator that made a generated source, else "".
        prompt: prompt or caption that came with the source, else "".
        model: the value of the dataset's per-sample model field (``--generated-field``, e.g.
            Dragon's ``model.txt``) that assigned it to ``generator``, else "".
        span: ``(offset, size)`` in bytes of a WebDataset sample's image inside its shard.
    """

    image_id: str
    path: str
    source_set: str
    generator: str = ""
    prompt: str = ""
    model: str = ""
    span: tuple[int, int] | None = None


def bundled_photos_dir() -> Path:
    """Folder of the demo photographs shipped with dpgen (see ``dpgen/data/ATTRIBUTION.md``)."""
    return DATA_DIR / "photos"


def check_source_set(source_set: str) -> None:
    if source_set not in (SOURCE_REAL, SOURCE_GENERATED):
        raise ValueError(
            f"source_set must be {SOURCE_REAL!r} or {SOURCE_GENERATED!r}, got {source_set!r}"
        )
