"""The finest level joining the fit after the coarse phase (core/grid/fit.py,
``JOIN_FROM_LEVEL1``): the synthesis reads it first as it reads level 1,
scaled."""
import torch

from core.grid import fit as F
from core.grid.arch import GridArch
from core.options import EncodeOptions
from plugin_support import kodak_crop


def _layers(arch):
    return F._init_layers(arch, torch.Generator().manual_seed(3), torch.device("cpu"))


def test_join_sets_level_zero_columns_from_level_one_and_nothing_else():
    arch = GridArch(7, (24, 24), 3)
    layers = _layers(arch)
    before = [(w.detach().clone(), b.detach().clone()) for w, b in layers]
    assert not torch.equal(before[0][0][:, 0], before[0][0][:, 1])
    F.join_finest_level(layers, arch, 0.5)
    first, out = layers[0][0], layers[-1][0]
    assert torch.equal(first[:, 0], 0.5 * before[0][0][:, 1])
    assert torch.equal(first[:, 1:], before[0][0][:, 1:])
    skip = 24  # the output layer reads [hidden (24), latents (7)]
    assert torch.equal(out[:, skip], 0.5 * before[-1][0][:, skip + 1])
    assert torch.equal(out[:, :skip], before[-1][0][:, :skip])
    assert torch.equal(out[:, skip + 1 :], before[-1][0][:, skip + 1 :])
    assert torch.equal(layers[1][0], before[1][0])
    assert all(torch.equal(b, b0) for (_, b), (_, b0) in zip(layers, before))
    assert all(w.requires_grad for w, _ in layers)  # still the fit's leaf tensors


def test_join_without_hidden_layers_copies_the_only_layer():
    arch = GridArch(4, (), 3)
    layers = _layers(arch)
    w1 = layers[0][0][:, 1].detach().clone()
    F.join_finest_level(layers, arch, 1.0)
    assert torch.equal(layers[0][0][:, 0], w1)


def _spy(monkeypatch):
    calls = []
    real = F.join_finest_level

    def spy(layers, arch, scale):
        calls.append((arch.levels, scale))
        real(layers, arch, scale)

    monkeypatch.setattr(F, "join_finest_level", spy)
    return calls


def test_fit_joins_once_when_it_has_a_coarse_phase(monkeypatch):
    calls = _spy(monkeypatch)
    image = kodak_crop("kodim23", box=(256, 128, 512, 384))  # 256x256: a coarse phase
    steps, coarse = F.schedule(F.EFFORT_STEPS[1], 40, big=True)
    assert coarse > 0
    F.fit_grid(image, EncodeOptions(quality=40, effort=1))
    assert calls == [(F.default_levels(256, 256), F.JOIN_FROM_LEVEL1)]


def test_fit_without_a_coarse_phase_or_switched_off_never_joins(monkeypatch):
    calls = _spy(monkeypatch)
    F.fit_grid(kodak_crop("kodim23", box=(256, 128, 320, 192)), EncodeOptions(quality=40, effort=1))  # 64x64
    monkeypatch.setattr(F, "JOIN_FROM_LEVEL1", 0)
    F.fit_grid(kodak_crop("kodim23", box=(256, 128, 512, 384)), EncodeOptions(quality=40, effort=1))
    assert calls == []
