"""The synthesis' two ways of upsampling a latent grid agree: the interpolation
matrices the fit uses on CUDA (a deterministic backward) and torch's bilinear
upsampling used on the CPU."""
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


@pytest.mark.parametrize("widths", [(16, 16), (8,), ()])
def test_planes_equal_the_pixel_major_render(widths):
    from core.grid.arch import GridArch, synthesize, synthesize_planes

    gen = torch.Generator().manual_seed(1)
    height, width = 37, 53
    arch = GridArch(4, widths, 3)
    latents = [torch.randn(s, generator=gen) for s in arch.grid_shapes(height, width)]
    layers = [(torch.randn(o, i, generator=gen), torch.randn(o, generator=gen)) for o, i in arch.layer_shapes()]
    ref = synthesize(latents, layers, (height, width), whole_rows=height)
    planes = synthesize_planes(latents, layers, (height, width))
    assert planes.shape == (3, height, width)
    assert torch.allclose(planes.permute(1, 2, 0), ref, atol=1e-4)


def test_block_size_does_not_change_the_floats_of_a_kodak_render():
    # the decoder renders tall images in blocks of rows (ROW_BLOCK, 128 before issue
    # 8's eleventh round): at a Kodak image's width the block size must not change a
    # single value (each block is one product of block rows x 768 pixels; much
    # narrower blocks can take another GEMM kernel and round differently)
    from core.grid.arch import GridArch, synthesize

    gen = torch.Generator().manual_seed(2)
    height, width = 512, 768
    arch = GridArch(7, (24, 24), 3)
    latents = [torch.randint(-8, 8, s, generator=gen).float() for s in arch.grid_shapes(height, width)]
    layers = [(torch.randn(o, i, generator=gen), torch.randn(o, generator=gen)) for o, i in arch.layer_shapes()]
    ref = synthesize(latents, layers, (height, width), row_block=128)
    for rows in (32, 64, 100):
        assert torch.equal(synthesize(latents, layers, (height, width), row_block=rows), ref)
    # nor the bands of rows whose latents are upsampled at once (whole blocks each)
    for band in (1, 32, 100, 256, 512):
        assert torch.equal(synthesize(latents, layers, (height, width), band_rows=band), ref)


@pytest.mark.parametrize("widths", [(8, 6), ()])
@pytest.mark.parametrize("pixels", [1, 63, 64, 1000])
def test_the_chunked_mlp_is_the_plain_mlp(widths, pixels):
    # the decoder's MLP runs as batched 64-row products (thread-count invariant):
    # any pixel count, padded and cut back, with and without the skip path
    from core.grid.arch import GridArch, _mlp

    arch = GridArch(3, widths, 3)
    gen = torch.Generator().manual_seed(pixels)
    layers = [(torch.randn(o, i, generator=gen), torch.randn(o, generator=gen)) for o, i in arch.layer_shapes()]
    x = torch.randn(pixels, 3, generator=gen)
    ref, x0 = x, x
    for k, (w, b) in enumerate(layers):
        if k == len(layers) - 1 and w.shape[1] != ref.shape[1]:
            ref = torch.cat([ref, x0], dim=1)
        ref = ref @ w.T + b
        if k < len(layers) - 1:
            ref = torch.relu(ref)
    out = _mlp(x, layers)
    assert out.shape == (pixels, 3)
    assert torch.allclose(out, ref, atol=1e-5)
