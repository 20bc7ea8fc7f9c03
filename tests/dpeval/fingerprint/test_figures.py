"""Fingerprint pictures: the spectrum peaks where a periodic trace is."""

from __future__ import annotations

import numpy as np

from dpeval.fingerprint.figures import fingerprint_rgb, spectrum_db


def test_spectrum_of_a_period_4_pattern_peaks_at_a_quarter_cycle_per_pixel():
    size = 32
    x = np.arange(size)
    f = np.stack([np.broadcast_to(np.cos(2 * np.pi * x / 4), (size, size))] * 3)  # along width
    s = spectrum_db(f)
    row, col = np.unravel_index(np.argmax(s), s.shape)
    assert row == size // 2 and abs(col - size // 2) == size // 4  # 0 and +-1/4 cycle / px


def test_fingerprint_rgb_stretches_each_channel_and_greys_other_channel_counts():
    f = np.random.default_rng(0).normal(size=(3, 8, 8)) * [[[1]], [[5]], [[0.1]]]
    rgb = fingerprint_rgb(f)
    assert rgb.dtype == np.uint8 and (rgb.min(axis=(0, 1)) == 0).all()
    assert (rgb.max(axis=(0, 1)) == 255).all()
    grey = fingerprint_rgb(np.random.default_rng(1).normal(size=(64, 8, 8)))
    assert grey.shape == (8, 8, 3) and (grey[..., 0] == grey[..., 2]).all()
