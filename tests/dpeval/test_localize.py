"""`dpeval localize` on awkward real files with a tiny localizer (CPU, seconds)."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from dpeval.cli import main
from dpeval.localize import image_score, predict_tiles
from dpeval.maps import read_map, read_mask
from dpeval.tgif.card import load_localizer


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 200 / w, yy * 200 / h, (xx + yy) * 100 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def photos(tmp_path):
    """A folder of every format and mode the command converts, one corrupt file, and a file
    input beside it. Sizes (W x H) as displayed."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    rgb = Image.fromarray(_photo(24, 40))  # stored 40 x 24
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display: 24 x 40
    rgb.save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(_photo(30, 36)[..., 0]).save(folder / "gray.png")
    Image.fromarray(_photo(32, 32)).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.arange(28 * 20).reshape(28, 20) * 100).astype(np.uint16)).save(
        folder / "sub" / "deep16.png"
    )
    rgba = np.dstack([_photo(20, 26), np.full((20, 26), 128, np.uint8)])
    Image.fromarray(rgba).save(folder / "alpha.png")
    Image.fromarray(_photo(22, 34)).save(folder / "web.webp")
    Image.fromarray(_photo(18, 50)).save(folder / "scan.tif")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    single = tmp_path / "single.png"
    Image.fromarray(_photo(40, 40, seed=3)).save(single)
    return folder, single


SIZES = {  # key -> (H, W) as displayed
    "rotated": (40, 24), "gray": (30, 36), "cmyk": (32, 32), "sub/deep16": (28, 20),
    "alpha": (20, 26), "web": (22, 34), "scan": (18, 50), "single": (40, 40),
}  # fmt: skip


def test_every_format_gets_a_map_mask_and_overlay(
    photos, tiny_localizer_dir, tmp_path, capsys, caplog
):
    caplog.set_level(logging.INFO)
    folder, single = photos
    out = tmp_path / "out"
    argv = ["localize", "--model", str(tiny_localizer_dir), str(folder), str(single)]
    assert main([*argv, "--out", str(out), "--threshold", "0.5"]) == 0
    assert "localized 8 image(s) (0 done before, 1 failed, 9 found)" in capsys.readouterr().out
    records = {
        r["key"]: r for r in map(json.loads, (out / "results.jsonl").read_text().split("\n")[:-1])
    }
    assert set(records) == set(SIZES)
    for key, (h, w) in SIZES.items():
        record = records[key]
        prob = read_map(out / record["map"])
        assert prob.shape == (h, w) and (record["height"], record["width"]) == (h, w)
        assert 0.0 <= prob.min() and prob.max() <= 1.0
        assert Image.open(out / record["map"]).mode == "I;16"
        mask = read_mask(out / record["mask"])
        assert (mask == (prob > 0.5)).all()
        assert record["fraction_over_threshold"] == pytest.approx(mask.mean())
        assert 0.0 <= record["score"] <= 1.0
        overlay = Image.open(out / record["overlay"])
        assert overlay.mode == "RGB" and overlay.size == (w, h)
    assert records["cmyk"]["conversion"] == "CMYK -> RGB"
    assert records["rotated"]["conversion"] == "EXIF orientation 6 applied"
    assert records["sub/deep16"]["conversion"].startswith("I;16 -> RGB")
    assert "transparency" in records["alpha"]["conversion"] and records["web"]["conversion"] is None
    assert "CMYK -> RGB" in caplog.text  # conversions are logged too
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["key"] for f in failures] == ["broken"] and "cannot decode" in failures[0]["error"]

    # resumable: nothing to do again; a line cut by a kill is redone
    assert main([*argv, "--out", str(out)]) == 0
    assert "localized 0 image(s) (8 done before, 1 failed" in capsys.readouterr().out
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    assert main([*argv, "--out", str(out)]) == 0
    assert "localized 1 image(s) (7 done before" in capsys.readouterr().out
    assert len((out / "results.jsonl").read_text().splitlines()) == 8

    # other settings need another folder
    assert main([*argv, "--out", str(out), "--threshold", "0.7"]) == 2
    assert "made with other settings (threshold" in caplog.text


def test_tiles_batches_and_the_whole_image_agree_where_they_must(tiny_localizer_dir, tmp_path):
    model = load_localizer(str(tiny_localizer_dir))
    image = _photo(90, 130)
    Image.fromarray(image).save(tmp_path / "big.png")
    whole = predict_tiles(model, [image], "cpu")[0]
    with torch.no_grad():  # a direct transcription: sigmoid of the model's logits
        direct = torch.sigmoid(model(torch.from_numpy(image).permute(2, 0, 1)[None]))[0, 0]
    np.testing.assert_allclose(whole, direct.numpy(), atol=1e-6)
    results = {}
    for tile, batch in ((256, 1), (64, 1), (64, 4)):
        out = tmp_path / f"t{tile}-b{batch}"
        argv = ["localize", "--model", str(tiny_localizer_dir), str(tmp_path / "big.png")]
        argv += ["--out", str(out), "--max-side", str(tile), "--tile-overlap", "16"]
        assert main([*argv, "--batch-size", str(batch)]) == 0
        record = json.loads((out / "results.jsonl").read_text())
        results[tile, batch] = (read_map(out / record["map"]), record["tiles"])
    # one tile: the whole-image map (16-bit quantisation); 2 x 3 tiles of 64 px otherwise
    np.testing.assert_allclose(results[256, 1][0], whole, atol=1 / 65535)
    assert results[256, 1][1] == 1 and results[64, 1][1] == 6
    np.testing.assert_allclose(results[64, 1][0], results[64, 4][0], atol=2 / 65535)


def test_a_diffiml_localizer_gives_the_same_maps_whatever_the_batching(
    tiny_diffiml_localizer_dir, tmp_path
):
    """Each tile's noise is seeded by its image and position, not by what it is batched with."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):  # equal sizes: batched together; 70 x 90 px: tiles of 48 px
        Image.fromarray(_photo(70, 90, seed=i)).save(folder / f"p{i}.png")
    maps = {}
    for batch in (1, 4):
        out = tmp_path / f"b{batch}"
        argv = ["localize", "--model", str(tiny_diffiml_localizer_dir), str(folder), "--out"]
        argv += [str(out), "--max-side", "48", "--tile-overlap", "8", "--batch-size", str(batch)]
        assert main(argv) == 0
        maps[batch] = [read_map(out / "maps" / f"p{i}.png") for i in range(3)]
    for one, four in zip(maps[1], maps[4], strict=True):
        assert one.shape == (70, 90)
        np.testing.assert_allclose(one, four, atol=2 / 65535)
    assert not np.array_equal(maps[1][0], maps[1][1])


def test_bad_inputs_are_one_line_errors_before_any_work(tiny_localizer_dir, tmp_path, caplog):
    Image.fromarray(_photo(20, 20)).save(tmp_path / "x.png")
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        (["--model", str(tmp_path / "nope")], str(tmp_path / "x.png"), "no such model folder"),
        (["--model", str(tmp_path)], str(tmp_path / "x.png"), "no config.json"),
        (["--model", str(tiny_localizer_dir)], str(tmp_path / "missing.png"), "no such file"),
        (["--model", str(tiny_localizer_dir)], str(tmp_path / "notes.txt"), "not an image file"),
    ]
    for extra, target, message in cases:
        caplog.clear()
        assert main(["localize", *extra, target, "--out", str(tmp_path / "o")]) == 2
        assert message in caplog.text, message
    assert not (tmp_path / "o" / "maps").exists()


def test_an_extractor_folder_as_the_model_says_what_it_is(tiny_localizer_dir, tmp_path, caplog):
    from dptrain.model import DiffusionPrint

    DiffusionPrint(out_channels=4, width=8, depth=3).save_pretrained(tmp_path / "dp")
    Image.fromarray(_photo(20, 20)).save(tmp_path / "x.png")
    assert main(["localize", "--model", str(tmp_path / "dp"), str(tmp_path / "x.png"),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        f"{tmp_path / 'dp'}: a DiffusionPrint extractor, not a localizer; train one with "
        "dpeval tgif (OUTPUT/best)"
    ]


def test_a_run_where_no_input_can_be_read_exits_2(tiny_localizer_dir, tmp_path, caplog):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.jpg").write_text("a text file renamed")
    out = tmp_path / "o"
    args = ["localize", "--model", str(tiny_localizer_dir), "--out", str(out)]
    assert main([*args, str(tmp_path / "in")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"no input could be read: 1 failed (see {out / 'failures.jsonl'})"]
    assert len((out / "failures.jsonl").read_text().splitlines()) == 1
    # one readable input beside it: the run succeeds, the failure is recorded
    Image.fromarray(_photo(20, 20)).save(tmp_path / "in" / "ok.png")
    assert main([*args, str(tmp_path / "in")]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 1
    assert len((out / "failures.jsonl").read_text().splitlines()) == 1


def test_image_score_is_the_mean_of_the_top_percent():
    prob = np.zeros((100, 100))
    prob[:10, :10] = 1.0  # 1 % of the pixels
    assert image_score(prob) == 1.0
    assert image_score(np.full((10, 10), 0.25)) == 0.25
