"""Lineage math: NCC of fingerprints, the two clusterings, the written files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpeval.fingerprint.lineage import (
    LineageResult,
    cluster_ncc,
    cluster_profiles,
    ncc_matrix,
    write_outputs,
)
from dpgen.errors import InputError


def test_ncc_is_pearson_on_the_common_centre_crop():
    g = np.random.default_rng(0)
    a, b = g.normal(size=(3, 8, 8)), g.normal(size=(3, 12, 12))
    got = ncc_matrix([a, b])
    expected = np.corrcoef(a.ravel(), b[:, 2:10, 2:10].ravel())[0, 1]
    assert got[0, 1] == pytest.approx(expected) and got[0, 0] == pytest.approx(1.0)
    with pytest.raises(InputError, match="different channel counts"):
        ncc_matrix([a, g.normal(size=(1, 8, 8))])


def test_clusterings_join_the_closest_pair_first():
    profiles = np.array([[0.9, 0.1, 0.0], [0.2, 0.9, 0.1], [0.88, 0.12, 0.0], [0.1, 0.8, 0.2]])
    tree = cluster_profiles(profiles)
    assert sorted(tree[0][:2]) == [0, 2]
    assert tree[0][2] == pytest.approx(np.sqrt((0.02**2 + 0.02**2) / 3))  # RMS difference
    ncc = np.array([[1.0, 0.1, 0.9], [0.1, 1.0, -0.2], [0.9, -0.2, 1.0]])
    assert sorted(cluster_ncc(ncc)[0][:2]) == [0, 2]


def test_outputs(tmp_path):
    result = LineageResult(
        fingerprints=["a", "b"],
        image_sets=["a", "b"],
        detection_rate=[[0.9, 0.2], [0.1, 0.8]],
        real_false_positive=[0.05, 0.1],
        accuracy=[[0.925, 0.575], [0.5, 0.85]],
        ncc=[[1.0, 0.3], [0.3, 1.0]],
        linkage_detection=cluster_profiles(np.array([[0.9, 0.2, 0.05], [0.1, 0.8, 0.1]])).tolist(),
        linkage_ncc=cluster_ncc(np.array([[1.0, 0.3], [0.3, 1.0]])).tolist(),
        counts={"real": 3, "a": 3, "b": 3},
    )
    write_outputs(result, {"a": np.zeros((3, 8, 8)), "b": np.ones((3, 8, 8))}, tmp_path)
    rows = (tmp_path / "detection_rate.csv").read_text().splitlines()
    assert rows[0] == "fingerprint,a,b,real" and rows[1].startswith("a,0.900000,0.200000,0.05")
    assert json.loads((tmp_path / "lineage.json").read_text())["ncc"][0][1] == 0.3
    assert all(
        (tmp_path / f).is_file() for f in ("dendrogram.png", "matrices.png", "fingerprints.png")
    )
    assert "| a | 90.0 | 20.0 | 5.0 |" in result.to_markdown()
