"""The fit's synthesis in bfloat16 on CPUs with native bfloat16 (core/grid/fit.py, CPU_BF16)."""
import numpy as np
import pytest
import torch

from core.codec import decode, encode
from core.grid import fit as F
from core.grid.arch import GridArch, synthesize_planes
from core.options import EncodeOptions
from plugin_support import kodak_crop

needs_bf16 = pytest.mark.skipif(not F._cpu_bf16(), reason="this CPU has no native bfloat16")


def _render_dtype(device: str) -> torch.dtype:
    arch = GridArch(3, F.WIDTHS, 3)
    latents = [torch.randn(s) for s in arch.grid_shapes(16, 12)]
    layers = [(torch.randn(o, i), torch.zeros(o)) for o, i in arch.layer_shapes()]
    with F.synthesis_precision(torch.device(device)):
        return synthesize_planes(latents, layers, (16, 12)).dtype


@needs_bf16
def test_cpu_synthesis_runs_in_bfloat16(monkeypatch):
    assert _render_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(F, "CPU_BF16", False)
    assert _render_dtype("cpu") == torch.float32


def test_cuda_keeps_float32():
    # no autocast is entered for CUDA (nothing touches a GPU here)
    ctx = F.synthesis_precision(torch.device("cuda"))
    assert not isinstance(ctx, torch.autocast)


@needs_bf16
def test_bfloat16_fit_decodes_as_well_as_float32(monkeypatch):
    # a real Kodak crop fitted both ways: the file of the bfloat16 fit decodes (in
    # float32, as always) to a picture as close to the original as the float32 fit's
    image = kodak_crop("kodim23", box=(300, 200, 396, 264))
    opts = EncodeOptions(quality=50, effort=2)

    def psnr(data: bytes) -> float:
        out = decode(data).astype(np.float64)
        return 10 * np.log10(255**2 / np.mean((out - image) ** 2))

    with_bf16 = encode(image, opts)
    monkeypatch.setattr(F, "CPU_BF16", False)
    with_f32 = encode(image, opts)
    assert with_bf16 != with_f32  # the precision reached the fit
    assert psnr(with_bf16) > psnr(with_f32) - 0.5
    assert len(with_bf16) < 1.1 * len(with_f32)
