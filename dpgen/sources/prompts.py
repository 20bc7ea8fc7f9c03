"""Prompts for text-to-image sources: a COCO captions file or a text file of prompts."""

from __future__ import annotations

from dpgen.sources.coco import read_json
from dpgen.sources.refs import DATA_DIR, SourceError


def load_prompts(path: str | None) -> list[str]:
    """Prompts for text-to-image sources.

    Args:
        path: a ``.json`` COCO captions file (``captions_val2017.json`` layout: every
            ``annotations[i]["caption"]``, in file order), or a text file with one prompt per
            line (blank lines skipped); None reads the bundled ``dpgen/data/prompts.txt``.

    Returns:
        The prompts, stripped, in file order.

    Raises:
        SourceError: missing file, malformed JSON, or no prompt at all.
    """
    path = str(DATA_DIR / "prompts.txt") if path is None else str(path)
    if path.lower().endswith(".json"):
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise SourceError(f"{path}: not a COCO captions file (no 'annotations' list)")
        try:
            prompts = [str(a["caption"]).strip() for a in data["annotations"]]
        except (KeyError, TypeError) as err:
            raise SourceError(f"{path}: an annotation has no 'caption'") from err
    else:
        try:
            with open(path, encoding="utf-8") as f:
                prompts = [line.strip() for line in f]
        except FileNotFoundError as err:
            raise SourceError(f"{path}: no such file") from err
        except UnicodeDecodeError as err:
            raise SourceError(f"{path}: not a UTF-8 text file ({err})") from err
    prompts = [p for p in prompts if p]
    if not prompts:
        raise SourceError(f"{path}: no prompts")
    return prompts
