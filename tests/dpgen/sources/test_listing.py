"""What a local path that is no folder of images says: missing, a file, an image file; a
missing path is told apart from a snapshot's config without listing the parent's files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dpgen.schema import SOURCE_REAL
from dpgen.sources import GeneratedSource, SourceError, list_generated, list_images, webdataset
from dpgen.sources.webdataset import resolve_shards


def test_a_missing_path_beside_shards_is_no_such_folder(tmp_path: Path) -> None:
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere" / "deep" / "x.tar").write_bytes(b"")  # a .tar below the parent
    missing = tmp_path / "nope"
    with pytest.raises(SourceError, match=rf"^{missing}: no such folder$"):
        list_images(str(missing), SOURCE_REAL)
    with pytest.raises(SourceError, match=rf"^{missing}/deeper: no such folder$"):
        list_images(f"{missing}/deeper", SOURCE_REAL)
    source = GeneratedSource("sd", str(missing), "model.txt", ("m",), required=True)
    with pytest.raises(SourceError, match=rf"^{missing}: no such folder$"):
        list_generated([source], count=1)


def test_a_missing_path_lists_nothing(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a.tar").write_bytes(b"")

    def listed(*args):
        raise AssertionError("listed a folder to resolve a missing path")

    monkeypatch.setattr(webdataset, "list_files", listed)
    assert resolve_shards(str(tmp_path / "nope")) is None
    assert resolve_shards("./nope") is None  # a relative path, not a Hub id


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    notes = tmp_path / "README.md"
    notes.write_text("# notes\n")
    with pytest.raises(SourceError, match=rf"^{notes}: a file, not a folder of images$"):
        list_images(str(notes), SOURCE_REAL)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    with pytest.raises(SourceError, match=rf"^{photo}: an image file, not a folder; give the"):
        list_images(str(photo), SOURCE_REAL)


def test_a_snapshot_s_unknown_config_is_still_named(dragon: Path) -> None:
    with pytest.raises(SourceError, match=r"no config 'Nope'; the card declares \['ExtraSmall'"):
        list_images(f"{dragon}/Nope", SOURCE_REAL)
    with pytest.raises(SourceError, match=rf"^{dragon}/README.md: a file, not a folder"):
        list_images(f"{dragon}/README.md", SOURCE_REAL)
