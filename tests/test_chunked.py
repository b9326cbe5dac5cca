"""The fit's synthesis a block of pixels at a time (core.grid.chunked) is the
whole-image one: the same output and the same gradients, for every layout of
layers, with a last block shorter than the rest, in float32 and bfloat16."""
import pytest
import torch

from core.grid import chunked
from core.grid.arch import GridArch, synthesize_planes


def _setup(widths, height, width, seed=0):
    gen = torch.Generator().manual_seed(seed)
    arch = GridArch(4, widths, 3)
    latents = [torch.randn(s, generator=gen).requires_grad_() for s in arch.grid_shapes(height, width)]
    layers = [(torch.randn(o, i, generator=gen).mul_(0.4).requires_grad_(), torch.randn(o, generator=gen).requires_grad_())
              for o, i in arch.layer_shapes()]
    target = torch.rand(3, height, width, generator=gen)
    return latents, layers, target


def _loss_and_grads(latents, layers, target, blocks, autocast=False):
    params = latents + [t for layer in layers for t in layer]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = synthesize_planes(latents, layers, tuple(target.shape[1:]), blocks=blocks)
    loss = torch.mean((out.float() - target) ** 2)
    return out.float(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize("widths", [(16, 16), (8,), ()])
def test_blocks_give_the_whole_image_s_output_and_gradients(widths, monkeypatch):
    monkeypatch.setattr(chunked, "CHUNK", 500)  # 37 * 53 = 1961 pixels: four blocks, the last short
    latents, layers, target = _setup(widths, 37, 53)
    want_out, want = _loss_and_grads(latents, layers, target, blocks=False)
    got_out, got = _loss_and_grads(latents, layers, target, blocks=True)
    assert got_out.dtype == torch.float32
    assert torch.allclose(got_out, want_out, rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-6)
        assert (g != 0).any()


def test_blocks_in_bfloat16_under_autocast(monkeypatch):
    """Under the fit's bfloat16 autocast the blocks compute in bfloat16 (the
    output's dtype says so) and return float32 gradients near float32's."""
    monkeypatch.setattr(chunked, "CHUNK", 700)
    latents, layers, target = _setup((16, 16), 37, 53, seed=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = synthesize_planes(latents, layers, (37, 53), blocks=True)
    assert out.dtype == torch.bfloat16
    _, want = _loss_and_grads(latents, layers, target, blocks=False)
    _, got = _loss_and_grads(latents, layers, target, blocks=True, autocast=True)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        assert float((g - w).norm() / w.norm()) < 0.03  # bfloat16 keeps 8 bits of mantissa


def test_the_block_size_changes_no_float_of_the_output(monkeypatch):
    """Each output pixel is one block's product whatever the blocks: the same
    floats for every block size (the weight gradients' sums differ by rounding only)."""
    latents, layers, target = _setup((16, 16), 64, 48, seed=3)
    outs = []
    for size in (1000, 3072, 1 << 20):
        monkeypatch.setattr(chunked, "CHUNK", size)
        outs.append(_loss_and_grads(latents, layers, target, blocks=True)[0])
    assert all(torch.allclose(o, outs[0], rtol=1e-6, atol=1e-6) for o in outs[1:])
