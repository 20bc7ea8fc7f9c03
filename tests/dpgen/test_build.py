"""End-to-end builds on the real tiny pipelines (CPU, 256 px, 32-px patches)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpgen.build import BuildError, build
from dpgen.card import dataset_card
from dpgen.cli import main as dpgen_main
from dpgen.info import build_counts, format_counts, load_build
from dpgen.schema import IMAGES, NEGATIVES, PAIRS, patch_array
from dpgen.sources import bundled_photos_dir


def _rows(out: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    dd = load_build(out)
    return {
        s: (dd[s]["patch_id"], patch_array(dd[s].data.column("patch"))) for s in (PAIRS, NEGATIVES)
    }


def _assert_same_rows(a: Path, b: Path) -> None:
    ra, rb = _rows(a), _rows(b)
    for split in ra:
        assert ra[split][0] == rb[split][0], split
        np.testing.assert_array_equal(ra[split][1], rb[split][1])


def test_counts_match_pairing_formulas(reference_build):
    counts = build_counts(reference_build)
    assert counts["formulas_hold"]
    images = load_build(reference_build)[IMAGES]
    k = 2
    real = [r for r in images if r["source_set"] == "real"]
    generated = [r for r in images if r["source_set"] == "generated"]
    assert len(real) == 2 and len(generated) == 2
    assert counts[PAIRS]["rows"] == sum((k + 1) * r["n_outside"] for r in real) + sum(
        2 * r["n_inside"] for r in generated
    )
    assert counts[NEGATIVES]["rows"] == sum((k + 1) * r["n_inside"] for r in real)
    assert counts[PAIRS]["rows"] > 0 and counts[NEGATIVES]["rows"] > 0
    assert counts[IMAGES]["generator_labels"] == ["real", "sd21", "flux"]
    provenance = json.loads(load_build(reference_build)[PAIRS].info.description)
    assert provenance["config"]["seed"] == 0 and provenance["versions"]["diffusers"]


def test_rows_are_self_consistent(reference_build):
    dd = load_build(reference_build)
    pairs = dd[PAIRS].remove_columns("patch").to_pandas()
    sizes = pairs.groupby("group_id").size()
    real = pairs[pairs.source_set == "real"].groupby("group_id").size()
    assert set(real) == {3} and set(sizes.drop(real.index)) == {2}
    assert pairs.patch_id.is_unique
    assert dd[NEGATIVES]["group_id"] == [None] * len(dd[NEGATIVES])
    # a generated image's two views are the source and the same generator's inpainting
    gen = pairs[pairs.source_set == "generated"]
    assert set(gen.category) == {1} and (gen.generator > 0).all()


def test_same_command_after_kill_resumes_without_duplicates(
    tmp_path, small_manifests, reference_build
):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dpgen", "build", "--generators", ",".join(small_manifests),
           "--out", str(out), "--num-images", "2", "--num-generated", "1", "--patch-size", "32",
           "--shard-size", "1", "--pass-size", "1"]  # fmt: skip
    # one shard per pass, so commits are spread over the run (rows do not depend on the pass
    # size: the reference build ran its four shards in one pass)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((out / "ledger").glob("*.json"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(list((out / "ledger").glob("*.json")))
    assert 2 <= committed < 4, "the kill should land mid-build"
    assert not (out / "dataset_dict.json").exists()
    assert dpgen_main(cmd[3:]) == 0
    _assert_same_rows(reference_build, out)
    assert len(list((out / "ledger").glob("*.json"))) == 4


def test_rerun_with_other_settings_is_refused(
    tmp_path, small_manifests, small_config, reference_build
):
    out = tmp_path / "b"
    shutil.copytree(reference_build, out)
    with pytest.raises(BuildError, match="built with other settings") as refused:
        build(small_config(out, small_manifests, seed=1))
    # only the differing keys, old and new: not the whole settings dump
    assert str(refused.value) == (
        f"{out}: built with other settings: seed 0 -> 1; use another --out or the same settings"
    )
    with pytest.raises(BuildError) as refused:
        build(small_config(out, small_manifests, patch_size=48, seed=1))
    assert ": seed 0 -> 1, patch_size 32 -> 48;" in str(refused.value)


def test_bad_sources_are_skipped_and_reported(tmp_path, small_manifests):
    src = tmp_path / "photos"
    src.mkdir()
    photo = sorted(bundled_photos_dir().glob("*"))[0]
    Image.open(photo).convert("RGB").save(src / "good.jpg")
    Image.open(photo).convert("L").save(src / "gray.png")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    data = (src / "good.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (40, 40), "red").save(src / "small.png")
    out = tmp_path / "out"
    code = dpgen_main(["build", "--generators", small_manifests[0], "--real", str(src), "--out",
                       str(out), "--num-generated", "0", "--patch-size", "32"])  # fmt: skip
    assert code == 0
    skipped = {Path(s["path"]).name: s["reason"] for s in build_counts(out)["skipped"]}
    assert set(skipped) == {"corrupt.jpg", "truncated.jpg", "small.png"}
    assert all(str(src / name) in reason for name, reason in skipped.items())
    images = load_build(out)[IMAGES]
    assert sorted(Path(p).name for p in images["path"]) == ["good.jpg", "gray.png"]


@pytest.mark.parametrize("command", ["build", "roundtrip"])
def test_a_folder_of_only_bad_images_fails_and_keeps_the_report(
    tmp_path, small_manifests, caplog, command
):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    data = sorted(bundled_photos_dir().glob("*.jpg"))[0].read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    extra = ["--num-generated", "0"] if command == "build" else []
    code = dpgen_main([command, "--generators", small_manifests[0], "--real", str(src), "--out",
                       str(out), "--patch-size", "32", *extra])  # fmt: skip
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{src}: no usable image: 2 skipped (reasons in {out / 'report.json'})"]
    report = json.loads((out / "report.json").read_text())
    assert sorted(Path(s["path"]).name for s in report["skipped"]) == [
        "corrupt.jpg",
        "truncated.jpg",
    ]


def test_user_errors_exit_2_with_the_reason(tmp_path, small_manifests, caplog):
    assert dpgen_main(["build", "--generators", "no-such-gen", "--out", str(tmp_path / "o")]) == 2
    assert "unknown generator 'no-such-gen'" in caplog.text
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(small_manifests[0]).read_text() + "colour: blue\n")
    assert dpgen_main(["build", "--generators", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}: unknown key(s) ['colour']" in caplog.text
    assert dpgen_main(["build", "--generators", small_manifests[0], "--real", str(tmp_path / "none"),
                       "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert f"{tmp_path / 'none'}: no such folder" in caplog.text
    assert dpgen_main(["info", str(tmp_path)]) == 2
    assert "not a finished dpgen build" in caplog.text
    extra = {"publish": ["--repo-id", "me/x"], "show": ["--out", str(tmp_path / "s.png")]}
    for command in ("info", "show", "publish"):
        caplog.clear()
        assert dpgen_main([command, str(tmp_path / "nope"), *extra.get(command, [])]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors == [f"{tmp_path / 'nope'}: no such folder"], command


def test_roundtrip_writes_authentic_groups_over_the_whole_image(
    tmp_path, small_manifests, small_config
):
    out = tmp_path / "rt"
    build(small_config(out, small_manifests, mode="roundtrip", num_images=1))
    counts = build_counts(out)
    assert counts["formulas_hold"] and counts[NEGATIVES]["rows"] == 0
    assert set(counts[PAIRS]["by_category"]["authentic"]) == {"real"}
    record = load_build(out)[IMAGES][0]
    assert record["n_inside"] == 0 and record["n_outside"] == 16 and record["mask_policy"] == "none"


@pytest.mark.slow
def test_two_processes_split_shards_and_match_one(tmp_path, small_manifests):
    # Bytes are identical for a fixed thread count (CPU float reductions depend on it), so
    # both runs get one thread per process.
    args = ["-m", "dpgen", "build", "--generators", ",".join(small_manifests), "--num-images", "2",
            "--num-generated", "1", "--patch-size", "32", "--shard-size", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, *args, "--out", str(one)], check=True, env=env, timeout=600)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    result = subprocess.run([*launcher, *args, "--out", str(two)], env=env, timeout=600,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on 2 process(es)" in result.stderr
    ledgers = [json.loads(p.read_text()) for p in sorted((two / "ledger").glob("*.json"))]
    assert len(ledgers) == 4
    # Same rows, same ids. Pixels: tiny-flux under torch.distributed rounds a few values
    # differently from a lone process (measured: 36 of 399,360 values, each off by one level);
    # SD and SDXL pixels are byte-identical.
    ra, rb = _rows(one), _rows(two)
    for split in ra:
        assert ra[split][0] == rb[split][0], split
        diff = np.abs(ra[split][1].astype(np.int16) - rb[split][1].astype(np.int16))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, split


def test_random_weights_build_says_so_everywhere(tmp_path, small_manifests, small_config):
    out = tmp_path / "rw"
    build(
        small_config(out, small_manifests[:1], num_images=1, num_generated=0, random_weights=True)
    )
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["weights"] == "random"
    assert [g["weights"] for g in provenance["generators"]] == ["random"]
    counts = build_counts(out)
    assert counts["weights"] == "random" and counts["formulas_hold"]
    assert format_counts(counts).startswith("RANDOM WEIGHTS")
    assert "This is not real data" in dataset_card(out)
