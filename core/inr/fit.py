"""Fitting a siren/mfn supernet to one picture: Once-for-All training with
the sandwich rule and LSQ quantization-aware training (the ANI paper,
``shared/papers/000``; OFA: Cai et al. 2020; sandwich rule: Yu & Huang
2019; LSQ: Esser et al. 2020).

Each step evaluates the largest and the smallest sub-network and
``N_RANDOM`` others drawn at random, on the same batch of pixels, and
minimises the mean of their MSEs (the paper's L2 loss); every sub-network
shares the slices of the supernet's tensors (:mod:`core.inr.layout`), so
after the fit any of them can be cut out without retraining. From
``QAT_START`` every tensor passes through its LSQ quantizer (learned step,
LSQ gradient scale ``1 / sqrt(numel * Qp)``), at the bit-width of its role:
``bits`` for hidden weights, ``first_bits`` for the first layer (mfn: every
filter), ``last_bits`` for the heads, ``BIAS_BITS`` for biases. Adam, a
cosine learning rate from ``LR[kind]`` to 2 % of it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import AniVerifyError
from ..container import FLAG_PROGRESSIVE
from ..lsq import LSQ
from ..options import EncodeOptions
from .bitstream import read_ints, slice_ints, write_sections
from .decode import coords, net_module, render, tensors
from .layout import KIND_FOURIER, KIND_GABOR, KIND_SIREN, InrArch

#: optimisation steps at effort 1..9
EFFORT_STEPS = {1: 40, 2: 150, 3: 300, 4: 600, 5: 1000, 6: 1500, 7: 2000, 8: 3000, 9: 5000}
#: Adam learning rates of the trained tensors (siren: before the omega_0 factor);
#: measured on a 256x256 crop of kodim23, (3, 48), 300 steps, float: siren 25.7 /
#: 27.2 / 28.0 / 28.4 dB at 2e-4 / 5e-4 / 1e-3 / 2e-3 (1e-3 kept for longer fits with
#: QAT); mfn-fourier 25.1 / 26.3 / 26.7 dB at 2e-3 / 5e-3 / 1e-2 (input scale 0.25)
LR = {KIND_SIREN: 1e-3, KIND_FOURIER: 1e-2, KIND_GABOR: 1e-2}
#: learning rate of the LSQ steps, relative to LR
LR_STEP_FACTOR = 0.1
#: fraction of the steps after which LSQ is on. siren (3, 48) on a 256x256 crop of
#: kodim23, 600 steps, 4 bits: 27.19 / 27.42 / 27.34 / 27.12 / 26.94 dB from 0 / 0.15 /
#: 0.3 / 0.5 / 0.7 (float32: 28.9 dB); the step's learning rate factor 1.0 instead of
#: 0.1 gave 26.83 dB at 0.3
QAT_START = 0.2
BIAS_BITS = 10
#: pixels per step: images with more pixels are fitted on random batches
BATCH = 1 << 13
#: sub-networks drawn at random each step, besides the largest and smallest
N_RANDOM = 2


@dataclass
class Fitted:
    sections: list
    n_latents: int
    n_params: int
    flags: int = 0
    stats: dict = field(default_factory=dict)


@dataclass
class Trained:
    """A trained supernet: raw tensors, their LSQ quantizers (None: float)."""

    arch: InrArch
    params: dict
    quant: dict | None

    def effective(self) -> dict:
        gain = net_module(self.arch.kind).gain
        out = {}
        for t in self.arch.tensors:
            p = self.params[t.name]
            if self.quant is not None:
                p = self.quant[t.name](p)
            out[t.name] = p * gain(t) if gain(t) != 1.0 else p
        return out


def make_arch(kind: int, channels: int, opts: EncodeOptions) -> InrArch:
    depths, widths = opts.elastic_choices()
    first, last = opts.resolved_layer_bits()
    return InrArch(kind, channels, depths, widths, opts.bits, first, last, BIAS_BITS)


def _pixels(height: int, width: int, device) -> torch.Tensor:
    ys, xs = coords(height), coords(width)
    return torch.stack([xs.repeat(height), ys.repeat_interleave(width)], dim=1).to(device)


def sandwich(arch: InrArch, gen: torch.Generator) -> list[tuple[int, int]]:
    """The largest, the smallest and ``N_RANDOM`` distinct others."""
    order = arch.order
    if len(order) <= 2 + N_RANDOM:
        return list(order)
    middle = order[1:-1]
    pick = torch.randperm(len(middle), generator=gen)[:N_RANDOM].tolist()
    return [order[-1], order[0], *(middle[i] for i in sorted(pick))]


def train(image: np.ndarray, arch: InrArch, steps: int, *, seed: int = 0, device: str = "cpu",
          quantize: bool = True, lr: float | None = None, progress=None) -> Trained:
    """Train the supernet ``arch`` on ``image`` (uint8 (H, W, C)) for ``steps``.

    ``quantize=False`` trains the float32 network of the same shape (for
    comparisons); it cannot be written to a file.
    """
    dev = torch.device(device)
    height, width, channels = image.shape
    gen = torch.Generator().manual_seed(seed)
    # pixel batches are drawn where the pixels are: on CUDA a CPU draw would be
    # copied to the device every step (on the CPU this is ``gen`` itself)
    dev_gen = gen if dev.type == "cpu" else torch.Generator(dev).manual_seed(seed)
    net = net_module(arch.kind)
    params = {k: v.to(dev).requires_grad_() for k, v in net.init_params(arch, gen, (height, width)).items()}
    quant = {t.name: LSQ(arch.bits_of(t.role)).to(dev) for t in arch.tensors} if quantize else None
    lr = LR[arch.kind] if lr is None else lr
    groups = [{"params": list(params.values()), "lr": lr}]
    if quant:
        groups.append({"params": [q.step for q in quant.values()], "lr": lr * LR_STEP_FACTOR})
    opt = torch.optim.Adam(groups)
    base = [g["lr"] for g in groups]
    trained = Trained(arch, params, quant)

    x_all = _pixels(height, width, dev)
    t_all = torch.from_numpy(image.reshape(-1, channels).astype(np.float32) / 255.0 - 0.5).to(dev)
    n = x_all.shape[0]
    for step in range(steps):
        p = step / steps
        cos = 0.5 * (1 + math.cos(math.pi * p))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * (0.02 + 0.98 * cos)
        if quant and p >= QAT_START and not next(iter(quant.values())).enabled:
            for name, q in quant.items():
                q.init_mse(params[name].detach())
        if n > BATCH:
            idx = torch.randint(0, n, (BATCH,), generator=dev_gen, device=dev)
            x, t = x_all[idx], t_all[idx]
        else:
            x, t = x_all, t_all
        eff = trained.effective()
        subnets = sandwich(arch, gen)
        loss = sum(torch.mean((net.forward(arch, eff, x, d, w) - t) ** 2) for d, w in subnets) / len(subnets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if arch.kind == KIND_GABOR:
            with torch.no_grad():
                for k in range(arch.depth):
                    params[f"F{k}.g"].clamp_(min=0)
        if progress is not None:
            progress(step + 1, steps)
    return trained


@torch.no_grad()
def export(trained: Trained) -> tuple[list[np.ndarray], np.ndarray]:
    """The integers (flat, full size) and effective float32 steps of every tensor."""
    gain = net_module(trained.arch.kind).gain
    ints, steps = [], []
    for t in trained.arch.tensors:
        q = trained.quant[t.name]
        w = trained.params[t.name].detach()
        if not q.enabled:
            q.init_mse(w)
        qi, s = q.integers(w)
        ints.append(qi.cpu().numpy().ravel())
        steps.append(np.float32(np.float32(s) * np.float32(gain(t))))
    return ints, np.asarray(steps, dtype=np.float32)


@torch.no_grad()
def float_psnr(trained: Trained, image: np.ndarray, subnet: tuple[int, int]) -> float:
    """PSNR of a sub-network of a trained supernet on the 8-bit image, rendered
    from its effective tensors (float32, or quantized if it was trained so)."""
    eff = {k: v.detach().cpu() for k, v in trained.effective().items()}
    out = render(trained.arch, eff, subnet, (image.shape[1], image.shape[0]))
    return psnr8(image, out)


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")


def fit_inr(image: np.ndarray, opts: EncodeOptions, progress, kind: int) -> Fitted:
    """Train, quantize and serialise; stores ``opts.subnet`` (``all``: the supernet)."""
    t0 = time.perf_counter()
    height, width, channels = image.shape
    arch = make_arch(kind, channels, opts)
    trained = train(image, arch, EFFORT_STEPS[opts.effort], seed=opts.seed, device=opts.resolved_device(),
                    progress=progress)
    fit_seconds = time.perf_counter() - t0
    ints, steps = export(trained)
    if opts.subnet != "all":
        d, w = arch.named(opts.subnet) if isinstance(opts.subnet, str) else opts.subnet
        dst = InrArch(kind, channels, (d,), (w,), arch.hidden_bits, arch.first_bits, arch.last_bits, arch.bias_bits)
        ints, steps = slice_ints(arch, ints, steps, d, w, dst)
        arch = dst
    sections = write_sections(arch, steps, ints)
    _verify(arch, sections, ints)
    params = tensors(arch, ints, steps)
    subnet_psnr = {s: psnr8(image, render(arch, params, s, (width, height))) for s in arch.order}
    stats = {
        "steps": EFFORT_STEPS[opts.effort],
        "fit_seconds": fit_seconds,
        "psnr": subnet_psnr[arch.order[-1]],
        "subnet_psnr": subnet_psnr,
        "device": opts.resolved_device(),
    }
    return Fitted(sections=sections, n_latents=0, n_params=arch.n_params(),
                  flags=FLAG_PROGRESSIVE if len(arch.order) > 1 else 0, stats=stats)


def _verify(arch: InrArch, sections, ints) -> None:
    """Decode what was written and check it reproduces the integers."""
    decoded = read_ints(arch, dict(sections), len(arch.order) - 1)
    if not all(np.array_equal(a, b) for a, b in zip(decoded, ints)):
        raise AniVerifyError("the written stream does not decode to the fitted network")
