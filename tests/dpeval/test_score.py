"""`dpeval score` on crafted map/mask files: each convention's value as computed by hand.

Same 40 x 40 image and 20 x 20 mask as tests/dpeval/test_metrics.py, written in every accepted
format (16-bit PNG, 8-bit PNG, .npy float; masks 0/255 and 0/1).
"""

import csv
import json
import logging

import numpy as np
import pytest
from PIL import Image

from dpeval.cli import main
from dpeval.maps import write_map

MASK = np.zeros((40, 40), np.uint8)
MASK[10:30, 10:30] = 1
HALF = np.zeros((40, 40))
HALF[10:30, 20:40] = 1


def imdl(tp, fp, fn):
    p, r = tp / (tp + fp + 1e-8), tp / (tp + fn + 1e-8)
    return 2 * p * r / (p + r + 1e-8)


#: key -> (map, writer, mask values, hand-computed values)
CASES = {
    "perfect": (MASK.astype(float), "png16", 255, {"tgif@0.5": 1.0, "trufor@0.5": 1.0}),
    "empty": (np.zeros((40, 40)), "png8", 1, {"tgif@0.5": 0.0, "trufor@0.5": 72 / 772}),
    "half": (HALF, "npy", 255, {"tgif@0.5": 0.5, "trufor@0.5": 36 / 154, "iou@0.5": 1 / 3}),
    "at-half": (MASK * 0.5, "npy", 1, {"tgif@0.5": 0.0, "tgif@best": 1.0, "auc": 1.0}),
}


def _write(folder, key, prob, kind):
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "png16":
        write_map(folder / f"{key}.png", prob)
    elif kind == "png8":
        Image.fromarray(np.rint(prob * 255).astype(np.uint8)).save(folder / f"{key}.png")
    else:
        np.save(folder / f"{key}.npy", prob)


@pytest.fixture
def folders(tmp_path):
    pred, masks = tmp_path / "pred", tmp_path / "masks"
    for key, (prob, kind, high, _) in CASES.items():
        _write(pred, key, prob, kind)
        masks.mkdir(exist_ok=True)
        Image.fromarray(MASK * high).save(masks / f"{key}.png")
    return pred, masks


def test_each_convention_as_computed_by_hand(folders, tmp_path, capsys):
    pred, masks = folders
    assert main(["score", "--pred", str(pred), "--masks", str(masks), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = {r["pred"].rsplit("/", 1)[1].split(".")[0]: r for r in _csv(tmp_path / "pred-score")}
    for key, (_, _, _, expected) in CASES.items():
        for column, value in expected.items():
            assert float(rows[key][column]) == pytest.approx(value, rel=1e-9), (key, column)
    assert summary["n_images"] == 4
    tgif = summary["metrics"]["tgif@0.5"]
    assert tgif == {"mean": pytest.approx((1 + 0 + 0.5 + 0) / 4), "n": 4}
    imdl_mean = (imdl(400, 0, 0) + 0 + imdl(200, 200, 200) + 0) / 4
    assert summary["metrics"]["imdl_origin@0.5"]["mean"] == pytest.approx(imdl_mean)
    assert "IMDL-BenCo origin" in summary["definitions"]["imdl_origin@0.5"]
    table = (tmp_path / "pred-score" / "summary.md").read_text()
    for name in ("tgif", "trufor", "trufor_tgif", "imdl_origin", "imdl_reverse", "imdl_double"):
        assert f"| {name} |" in table
    assert "| tgif | 37.50 |" in table


def _csv(folder):
    with open(folder / "per_image.csv") as fh:
        return list(csv.DictReader(fh))


def test_pairs_csv_pairs_files_of_other_names(folders, tmp_path, capsys):
    pred, masks = folders
    (masks / "perfect.png").rename(masks / "perfect_mask_bbox_512.png")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("pred,mask\nperfect.png,perfect_mask_bbox_512.png\nhalf.npy,half.png\n")
    out = tmp_path / "s"
    args = ["score", "--pred", str(pred), "--masks", str(masks), "--pairs", str(pairs)]
    assert main([*args, "--out", str(out)]) == 0
    assert "| tgif | 75.00 |" in capsys.readouterr().out  # (1 + 0.5) / 2
    assert len(_csv(out)) == 2


def test_bad_inputs_are_one_line_errors(folders, tmp_path, caplog):
    pred, masks = folders
    base = ["score", "--pred", str(pred), "--masks", str(masks)]

    def fails(message, *extra):
        caplog.clear()
        assert main([*base, *extra]) == 2
        assert message in caplog.text, (message, caplog.text)

    np.save(pred / "half.npy", np.ones((40, 41)))  # a size mismatch names both files
    fails(f"{pred / 'half.npy'}: map is 41x40 but its mask {masks / 'half.png'} is 40x40")
    np.save(pred / "half.npy", HALF * 3)
    fails("map values must be finite and in [0, 1]")
    np.save(pred / "half.npy", HALF)
    Image.fromarray(MASK * 128).save(masks / "half.png")
    fails("neither 0/255 nor 0/1")
    Image.fromarray(MASK * 255).save(masks / "half.png")
    Image.fromarray(MASK * 255).save(masks / "lonely.png")
    fails("1 mask(s) without a map")
    (masks / "lonely.png").unlink()
    (tmp_path / "p.csv").write_text("map,gt\n")
    fails("needs columns 'pred' and 'mask'", "--pairs", str(tmp_path / "p.csv"))
    (tmp_path / "p.csv").write_text("pred,mask\nnope.png,half.png\n")
    fails("p.csv:2: pred file", "--pairs", str(tmp_path / "p.csv"))


def test_a_map_without_mask_is_left_out_with_a_warning(folders, tmp_path, caplog):
    pred, masks = folders
    caplog.set_level(logging.WARNING)
    np.save(pred / "real-photo.npy", np.zeros((40, 40)))
    assert main(["score", "--pred", str(pred), "--masks", str(masks)]) == 0
    assert "1 map(s) without a mask left out" in caplog.text
