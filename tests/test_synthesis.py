"""The synthesis' two ways of upsampling a latent grid agree: the interpolation
matrices the fit uses on CUDA (a deterministic backward) and torch's bilinear
upsampling used on the CPU; the fit's planes and the decoder's row blocks agree,
with and without the convolution tail; the tail is what its docstring says."""
import pytest
import torch
import torch.nn.functional as F

from core.grid.arch import _lerp_matrix


@pytest.mark.parametrize("shape, size", [((256, 384), (512, 768)), ((7, 5), (50, 37)), ((4, 6), (32, 48)), ((3, 3), (5, 6))])
def test_interpolation_matrices_equal_bilinear_upsampling(shape, size):
    y = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(y[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    got = _lerp_matrix(size[0], shape[0], "cpu") @ y @ _lerp_matrix(size[1], shape[1], "cpu").t()
    assert torch.allclose(got, ref, atol=1e-5)
    # each output mixes at most two inputs per axis, with weights summing to 1
    m = _lerp_matrix(size[0], shape[0], "cpu")
    assert torch.allclose(m.sum(1), torch.ones(size[0])) and ((m > 0).sum(1) <= 2).all()


@pytest.mark.parametrize("widths, convs", [((16, 16), 0), ((8,), 0), ((), 0), ((16, 16), 2), ((8,), 1)])
def test_planes_equal_the_pixel_major_render(widths, convs):
    from core.grid.arch import GridArch, synthesize, synthesize_planes

    gen = torch.Generator().manual_seed(1)
    height, width = 37, 53
    arch = GridArch(4, widths, 3, convs)
    latents = [torch.randn(s, generator=gen) for s in arch.grid_shapes(height, width)]
    layers = [(torch.randn(o, i, generator=gen), torch.randn(o, generator=gen)) for o, i in arch.layer_shapes()]
    ref = synthesize(latents, layers, (height, width), row_block=height, convs=convs)
    planes = synthesize_planes(latents, layers, (height, width), convs)
    assert planes.shape == (3, height, width)
    assert torch.allclose(planes.permute(1, 2, 0), ref, atol=1e-4)
    # the decoder's row blocks (halos of one row per convolution) give the same image
    for block in (1, 5, 16):
        blocks = synthesize(latents, layers, (height, width), row_block=block, convs=convs)
        assert torch.allclose(blocks, ref, rtol=1e-5, atol=1e-3), block  # values up to ~1e3


def test_the_convolution_tail_is_residual_3x3_with_replicated_edges_and_a_relu_between():
    from core.grid.arch import conv_tail

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 7, generator=gen)
    convs = [(torch.randn(2, 18, generator=gen), torch.randn(2, generator=gen)) for _ in range(2)]
    ref = x.clone()
    for k, (w, b) in enumerate(convs):  # by hand: loops over pixels, taps and channels
        padded = torch.stack([torch.stack([ref[:, min(max(r, 0), 5), min(max(c, 0), 6)] for c in range(-1, 8)], -1)
                              for r in range(-1, 7)], -2)  # (2, 8, 9)
        new = ref.clone()
        for o in range(2):
            for r in range(6):
                for c in range(7):
                    taps = padded[:, r : r + 3, c : c + 3].reshape(-1)  # (in, dy, dx) row-major
                    new[o, r, c] += w[o] @ taps + b[o]
        ref = torch.relu(new) if k == 0 else new
    assert torch.allclose(conv_tail(x, convs), ref, atol=1e-5)
    # zero convolutions are the identity (the fit's start)
    zero = [(torch.zeros(2, 18), torch.zeros(2))] * 2
    assert torch.equal(conv_tail(x.abs(), zero), x.abs())


def test_the_architecture_round_trips_in_both_format_versions():
    from core.errors import AniFormatError
    from core.grid.arch import MAX_CONVS, GridArch

    arch = GridArch(5, (16, 16), 3, 2)
    assert GridArch.unpack(arch.pack(2), 0, 2) == (arch, len(arch.pack(2)))
    plain = GridArch(5, (16, 16), 3)
    assert plain.pack(1) == plain.pack(2)[:-1] and GridArch.unpack(plain.pack(1), 0, 1) == (plain, 5)
    with pytest.raises(ValueError, match="version 1"):
        arch.pack(1)  # version 1 has no place for them
    with pytest.raises(AniFormatError, match="convolution"):
        GridArch.unpack(GridArch(5, (16,), 3).pack(2)[:-1] + bytes([MAX_CONVS + 1]), 0, 2)
    with pytest.raises(AniFormatError, match="truncated"):
        GridArch.unpack(arch.pack(2)[:-1], 0, 2)
    # the stored layers: the convolutions after the MLP's, (C, 9 C) each
    assert arch.layer_shapes()[-2:] == [(3, 27), (3, 27)] and len(arch.layer_shapes()) == 5
