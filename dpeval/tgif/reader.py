"""Index a TGIF tree: fully-regenerated (FR) fakes paired with their crop masks.

TGIF (Mareen et al.; TGIF2 adds Flux and random masks) ships one folder per kind of file:
``original``, ``masks``, ``SD2-fr``, ``SDXL-fr``, ``flux1{schnell,dev,filldev}-fr``,
``masks-flux``, and for random masks ``masks-sd2``, ``masks-sdxl``, ``masks-flux``, ``sd2-fr``,
``sdxl-fr``; each is split into ``training``, ``validation``, ``testing`` and, as the
generation code writes them, into a COCO-category subfolder. 571 training ids appear under
several categories with identical file names, so files are keyed by (split, category, id),
never by name alone; a layout without the category level is read too (category ``""``).

A fake ``{id}_mask_{type}.png_{gen}-{crop}_{var}.png`` has the crop's size and pairs with the
crop mask ``{id}_mask_{type}_{crop}.png`` (0/255, 8-bit L) of its generator family's mask folder.
The README spells SDXL's random fakes ``..._sd2-1024_...`` where the code writes
``..._sdxl-1024_...``: both are accepted. Nothing is guessed: a fake without exactly one mask of
its size, and a file whose folder or name is not TGIF's, is named in `TGIFIndex.missing` /
`TGIFIndex.unmatched` and left out.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from dpgen.errors import InputError

SPLITS = ("training", "validation", "testing")
#: TGIF's generator names, in the paper's Table 2 order, and their display names.
GENERATORS = {
    "sd2": "SD 2.1",
    "sdxl": "SDXL",
    "flux1schnell": "Flux schnell",
    "flux1dev": "Flux dev",
    "flux1filldev": "Flux fill",
}
MASK_TYPES = ("bbox", "segm", "random")
#: Mask groups of the paper's Table 2: semantic = object bbox or segmentation masks.
MASK_GROUPS = {"semantic": ("bbox", "segm"), "random": ("random",)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_FAKE = re.compile(
    r"(?P<id>\d+)_mask_(?P<type>bbox|segm|random)\.png_(?P<gen>[a-z0-9]+)-(?P<crop>\d+)_(?P<var>\d+)\.png"
)
_CROP_MASK = re.compile(r"(?P<id>\d+)_mask_(?P<type>bbox|segm|random)_(?P<crop>\d+)\.png")
#: Names TGIF ships that this reader knowingly does not use: full-size masks, the crop
#: rectangle, Photoshop masks, originals (FR fakes are scored on fakes only).
_UNUSED = re.compile(
    r"\d+_(mask_(bbox|segm|random)\.png|mask_\d+\.png|mask_(bbox|segm)\.png_ps_mask\.png"
    r"|orig(_\d+)?\.png)"
)
#: Mask folders and the generator families whose fakes they hold the masks of.
_MASK_FOLDERS = {
    "masks": ("sd2", "sdxl"),
    "masks-sd2": ("sd2",),
    "masks-sdxl": ("sdxl",),
    "masks-flux": ("flux",),
}


def family(generator: str) -> str:
    """Mask family of a generator: its masks come from the same crops (``flux`` for all Flux)."""
    return "flux" if generator.startswith("flux") else generator


@dataclass(frozen=True)
class TGIFSample:
    """One FR fake and its mask. ``crop`` is the crop size in the name (512 or 1024)."""

    split: str
    category: str
    image_id: str
    generator: str
    mask_type: str
    crop: int
    variation: int
    image: Path
    mask: Path


@dataclass
class TGIFIndex:
    """What `read_tgif` found under ``root``.

    Attributes:
        samples: every FR fake paired with exactly one mask of its size.
        originals: number of original images (distinct category / id) per split; listed, not
            used for scoring.
        missing: one line per fake left out, naming it and the mask it needs.
        unmatched: one line per file whose folder or name is not TGIF's.
    """

    root: Path
    samples: list[TGIFSample] = field(default_factory=list)
    originals: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def select(
        self,
        split: str,
        mask_types: tuple[str, ...] = MASK_TYPES,
        generators: tuple[str, ...] = tuple(GENERATORS),
    ) -> list[TGIFSample]:
        """Samples of one split restricted to the given mask types and generators."""
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; TGIF's are {SPLITS}")
        return [
            s
            for s in self.samples
            if s.split == split and s.mask_type in mask_types and s.generator in generators
        ]

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Paired fakes per split x generator x mask type (zeros included)."""
        found = Counter((s.split, s.generator, s.mask_type) for s in self.samples)
        return {
            split: {g: {t: found[split, g, t] for t in MASK_TYPES} for g in GENERATORS}
            for split in SPLITS
        }

    def summary(self) -> str:
        """A text table of `counts`, the originals, and how many files were left out."""
        head = f"{'split':<11}{'generator':<14}" + "".join(f"{t:>8}" for t in MASK_TYPES)
        lines = [f"TGIF at {self.root}: FR fakes paired with masks", head]
        for split, per_gen in self.counts().items():
            for gen, per_type in per_gen.items():
                lines.append(
                    f"{split:<11}{gen:<14}" + "".join(f"{n:>8}" for n in per_type.values())
                )
            lines.append(f"{split:<11}{'originals':<14}{self.originals.get(split, 0):>8}")
        lines.append(
            f"left out: {len(self.missing)} fakes without a mask, {len(self.unmatched)} unmatched files"
        )
        return "\n".join(lines)


def _folder_role(name: str) -> tuple[str, str] | None:
    """(role, detail) of a TGIF top-level folder name, or None."""
    low = name.lower()
    if low in _MASK_FOLDERS:
        return "masks", low
    if low.endswith("-fr") and low[:-3] in GENERATORS:
        return "fake", low[:-3]
    if low.endswith("-sp"):
        return "spliced", low
    if low == "original" or low.startswith("original-"):
        return "original", low
    return None


def _locate(rel: Path) -> tuple[str, str, str, str] | str:
    """(role, detail, split, category) of a file from its path relative to the root, or why not."""
    dirs = rel.parts[:-1]
    roles = [(i, _folder_role(d)) for i, d in enumerate(dirs)]
    roles = [(i, r) for i, r in roles if r is not None]
    splits = [i for i, d in enumerate(dirs) if d in SPLITS]
    if len(roles) != 1:
        return "no TGIF folder in its path" if not roles else "several TGIF folders in its path"
    if len(splits) != 1:
        return (
            f"no split folder ({', '.join(SPLITS)}) in its path" if not splits else "several splits"
        )
    (folder_at, (role, detail)), split_at = roles[0], splits[0]
    below = dirs[max(folder_at, split_at) + 1 :]
    if len(below) > 1:
        return f"nested too deep: expected at most a category folder, got {'/'.join(below)}"
    return role, detail, dirs[split_at], below[0] if below else ""


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:  # reads the header only
        return im.size


def read_tgif(root: str | Path) -> TGIFIndex:
    """Index the FR fakes of a TGIF tree and pair each with its crop mask.

    Args:
        root: folder holding TGIF's folders (``SD2-fr``, ``masks``, ...) at any depth, each with
            ``training`` / ``validation`` / ``testing`` inside or outside it.

    Raises:
        FileNotFoundError: when ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: TGIF root is not a folder")
    scan = _Scan(TGIFIndex(root=root))
    for path in sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    ):
        scan.add(path)
    for info, path in scan.fakes:
        scan.pair(info, path)
    scan.index.originals = {s: sum(o[0] == s for o in scan.originals) for s in SPLITS}
    return scan.index


@dataclass
class _Scan:
    """What `read_tgif` collects while walking the tree, then pairs."""

    index: TGIFIndex
    originals: set[tuple[str, str, str]] = field(default_factory=set)
    #: (family, split, category, id, mask type, crop) -> mask files
    masks: dict[tuple, list[Path]] = field(default_factory=lambda: defaultdict(list))
    fakes: list[tuple[dict, Path]] = field(default_factory=list)

    def add(self, path: Path) -> None:
        """File one image by the role of its TGIF folder (or list it as unmatched)."""
        rel = path.relative_to(self.index.root)
        where = _locate(rel)
        if isinstance(where, str):
            self.index.unmatched.append(f"{rel}: {where}")
            return
        role, detail, split, category = where
        if role == "original":
            self._original(rel, split, category)
        elif role == "masks":
            self._mask(rel, path, detail, split, category)
        elif role == "fake":
            self._fake(rel, path, detail, split, category)
        # spliced (-sp) fakes are not part of the FR benchmark

    def _original(self, rel: Path, split: str, category: str) -> None:
        if not _UNUSED.fullmatch(rel.name):
            self.index.unmatched.append(
                f"{rel}: not an original's name ({{id}}_orig[_{{crop}}].png)"
            )
        self.originals.add((split, category, rel.name.split("_", 1)[0]))

    def _mask(self, rel: Path, path: Path, folder: str, split: str, category: str) -> None:
        m = _CROP_MASK.fullmatch(rel.name)
        if m:
            for fam in _MASK_FOLDERS[folder]:
                key = (fam, split, category, m["id"], m["type"], int(m["crop"]))
                self.masks[key].append(path)
        elif not _UNUSED.fullmatch(rel.name):
            self.index.unmatched.append(
                f"{rel}: not a TGIF mask name ({{id}}_mask_{{type}}_{{crop}}.png)"
            )

    def _fake(self, rel: Path, path: Path, generator: str, split: str, category: str) -> None:
        m = _FAKE.fullmatch(rel.name)
        if m is None:
            self.index.unmatched.append(
                f"{rel}: not an FR fake name ({{id}}_mask_{{type}}.png_{{gen}}-{{crop}}_{{var}}.png)"
            )
            return
        # The README spells SDXL's random FR fakes with "sd2"; the generation code with "sdxl".
        allowed = {generator, "sd2"} if m["type"] == "random" else {generator}
        if m["gen"] not in allowed:
            self.index.unmatched.append(
                f"{rel}: name says {m['gen']!r} inside the {generator} folder"
            )
            return
        info = {**m.groupdict(), "gen": generator, "split": split, "category": category}
        self.fakes.append((info, path))

    def pair(self, info: dict, path: Path) -> None:
        """Pair a fake with its only mask of the same size, or list it as missing."""
        key = (family(info["gen"]), info["split"], info["category"], info["id"], info["type"],
               int(info["crop"]))  # fmt: skip
        found = self.masks.get(key, [])
        rel = path.relative_to(self.index.root)
        if len(found) != 1:
            wanted = f"{info['id']}_mask_{info['type']}_{info['crop']}.png"
            folders = [f for f, fams in _MASK_FOLDERS.items() if key[0] in fams]
            problem = (
                "no mask" if not found else f"{len(found)} masks ({', '.join(map(str, found))})"
            )
            self.index.missing.append(
                f"{rel}: {problem} {wanted} in {' or '.join(folders)} / {info['split']}"
                f"{'/' + info['category'] if info['category'] else ''}"
            )
            return
        if _size(path) != _size(found[0]):
            self.index.missing.append(
                f"{rel}: size {_size(path)} differs from its mask "
                f"{found[0].relative_to(self.index.root)} {_size(found[0])}"
            )
            return
        self.index.samples.append(
            TGIFSample(
                split=info["split"], category=info["category"], image_id=info["id"],
                generator=info["gen"], mask_type=info["type"], crop=int(info["crop"]),
                variation=int(info["var"]), image=path, mask=found[0],
            )
        )  # fmt: skip
