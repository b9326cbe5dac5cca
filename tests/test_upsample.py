"""The fit's upsampling (:mod:`core.grid.upsample`): torch's bilinear forward,
and a backward, the block transpose, that equals autograd's through
``F.interpolate`` at every whole factor, edges included."""
import pytest
import torch
import torch.nn.functional as F

from core.grid.arch import _upsample
from core.grid.upsample import upsample


def _reference(y, size):
    return F.interpolate(y[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


@pytest.mark.parametrize("grid,size", [((4, 6), (8, 12)), ((3, 5), (24, 40)), ((1, 1), (4, 8)), ((3, 5), (3, 15)),
                                       ((1, 3), (7, 9)), ((2, 7), (64, 7)), ((8, 12), (512, 768))])
def test_the_backward_is_the_transpose_of_torch_s_upsampling(grid, size):
    gen = torch.Generator().manual_seed(sum(size))
    y = torch.randn(grid, generator=gen, dtype=torch.float64)
    g = torch.randn(size, generator=gen, dtype=torch.float64)
    a = y.clone().requires_grad_()
    want = torch.autograd.grad((_reference(a, size) * g).sum(), a)[0]
    b = y.float().requires_grad_()
    out = upsample(b, size)
    assert torch.equal(out.detach(), _reference(y.float(), size))  # the same floats forward
    got = torch.autograd.grad((out * g.float()).sum(), b)[0]
    assert got.dtype == torch.float32 and got.shape == grid
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_other_factors_and_grad_free_calls_keep_torch_s_upsampling():
    y = torch.randn(5, 7, requires_grad=True)
    out = upsample(y, (12, 15))  # 12 / 5 is not whole: autograd through torch's own backward
    assert out.grad_fn is not None and type(out.grad_fn).__name__ != "_UpsampleBackward"
    assert torch.equal(out, _reference(y, (12, 15)))
    with torch.no_grad():
        assert torch.equal(upsample(y, (10, 14)), _reference(y, (10, 14)))


def test_the_synthesis_upsamples_with_it_on_the_cpu():
    y = torch.randn(4, 6, requires_grad=True)
    assert type(_upsample(y, (8, 12)).grad_fn).__name__ == "_UpsampleBackward"
    assert _upsample(y, (4, 6)) is y
