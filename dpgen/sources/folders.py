"""Image files under a local folder, listed recursively in a stable order."""

from __future__ import annotations

import os
from pathlib import Path

from dpgen.sources.refs import IMAGE_EXTENSIONS, SourceError


def list_folder(folder: Path) -> list[tuple[str, str]]:
    """(image_id, path) of every image under ``folder``, sorted by relative path.

    Hidden files and folders (name starting with '.', e.g. macOS ``._x.jpg`` resource forks)
    are skipped.
    """
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(root) / name
            image_id = path.relative_to(folder).with_suffix("").as_posix()
            if image_id in found:
                raise SourceError(
                    f"{folder}: {found[image_id].name} and {path.name} give the same image id "
                    f"{image_id!r}; rename one of them"
                )
            found[image_id] = path
    return [(image_id, str(found[image_id])) for image_id in sorted(found)]
