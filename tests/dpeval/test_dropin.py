import torch

from dpeval.dropin import DiffusionPrintDropIn
from dptrain.model import DiffusionPrint


def test_noiseprint_call_convention_and_full_resolution():
    torch.manual_seed(0)
    dp = DiffusionPrint(out_channels=4, width=8, depth=3)
    pixels = torch.randint(0, 256, (2, 3, 33, 47), dtype=torch.uint8)
    x = pixels.float() / 256.0  # how TruFor and MMFusion feed Noiseprint++
    raw = DiffusionPrintDropIn(dp, out_channels=None)
    torch.testing.assert_close(raw(x), dp.eval().extract(pixels), rtol=1e-5, atol=1e-5)
    assert raw.out_channels == 4

    projected = DiffusionPrintDropIn(dp).train()
    y = projected(x)
    assert y.shape == (2, 3, 33, 47) and projected.out_channels == 3
    assert not projected.extractor.training
    y.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in projected.extractor.parameters())
    assert projected.project.weight.grad is not None
