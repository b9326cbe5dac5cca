"""Fitting a grid neural image to one picture (quantization-aware, with the
rate in the loss): ``loss = MSE + lambda * bits / pixels`` (SHACIRA eq. 9,
``shared/papers/002``).

Phases, indexed by the fraction ``p`` of the step budget:
  * for images of ``COARSE_MIN_PIXELS`` or more, the first
    :func:`coarse_fraction` of the steps fit levels >= 1 to the image
    downsampled to level 1's grid (each step costs about a quarter); when
    level 0 joins, the synthesis reads it first as it reads level 1
    (``JOIN_FROM_LEVEL1``);
  * latents start near 0 (``LATENT_INIT``) and pass through the chosen
    rounding method (``options.rounding``, :mod:`core.rounding`,
    :mod:`core.sga`), which sees the step index and the temperature ``tau``
    of :func:`core.rounding.temperature` (for level 0 after a coarse phase,
    restarted when it joins);
  * from ``QAT_START`` the synthesis weights are LSQ-quantized at ``bits``;
  * every ``CTX_REFIT_EVERY`` full-resolution steps the context model is
    refitted to the hard-rounded latents (rate only, a few steps);
  * from ``FREEZE`` the latents are hard-rounded and frozen: the context
    model is fitted to them alone (:mod:`core.grid.context_fit`, rate only),
    then the synthesis adapts to them (distortion only), and the synthesis of
    the step with the lowest distortion is kept (``KEEP_BEST``);
  * the output layer's integers are re-chosen against its exact quadratic
    distortion (``POLISH``, :mod:`core.grid.polish`), here and after the
    refinement below;
  * after the last step, the latents of the ``RDO_LEVELS`` finest levels are
    moved by one where the final synthesis and the context model say the
    objective falls (:mod:`core.grid.rdo`; :func:`rdo_sweeps` sweeps, so a latent
    may move by that many steps), and the context model is refitted to the
    result.
Adam, one learning rate per group (latents, networks, context model), and
SOAP for the synthesis weight matrices (``NETS_OPTIMIZER``; budgets up to
``SOAP_MAX_BUDGET`` steps, longer ones keep Adam there too), each rate
following a cosine from its start value to 2 % of it over the budget. On a
CPU with native bfloat16 the synthesis of each step runs in bfloat16
(``CPU_BF16``); everything else, and the exported model, in float32. The
values below were chosen by measurement on Kodak images and crops at a few
hundred to two thousand steps (see the commit messages of this file).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AniVerifyError
from ..hooks import resolve, rounding_methods
from ..options import EncodeOptions
from .arch import GridArch, default_levels, synthesize_planes
from .bitstream import TAG_LATENTS, TAG_MODEL, BIAS_BITS, GridModel, latent_range, read_latents, read_model, write_latents, write_model
from .context import CTX_FRAC, N_CTX_PARAMS, N_FEATURES, N_PASSES, stored_passes
from .context_fit import CTX_FIT_STEPS, fit_context, quantize_ctx
from .decode import render
from ..lsq import LSQ, quantized_layers
from ..rounding import RoundingStep, temperature
from .rate import ContextTable, flat_bits, level_grids
from .keep_best import KeepBest
from .polish import polish_output
from .rdo import refine
from .soap import Soap

QAT_START = 0.4
#: latents start uniform in (-LATENT_INIT / 2, LATENT_INIT / 2): all round to 0, but
#: none sits on an integer, where the two-class SGA methods' relaxed sample has zero
#: gradient below temperature 1 (from all-zero latents they never move). Wider starts
#: cost ``ste`` bits (kodim05 256x256 crop, quality 40, effort 3: 0.84 bpp at 0.2 and
#: at 0, 1.09 bpp at 1.0, all about 23.4 dB)
LATENT_INIT = 0.2
#: 0.95 until issue 8's third round; at 850 steps 0.85 lowered the fit's objective by
#: 7-9 % at quality 90 (kodim01, kodim23) and changed it by -4.5..+0.8 % at 10, 25, 45
FREEZE = 0.85
#: optimisation steps at effort 1..9 (768x512: about 0.037 s per budget step with both
#: cores of the 2-core benchmark machine, the coarse phase's quarter-cost steps and the
#: refinement after the fit included: kodim01 at quality 90, 1200 steps, 43.8 s in
#: issue 8's fifteenth round; 0.06 s in its second). The default, 5, is sized to encode a
#: Kodak image in under a minute on a 2-core CPU with both cores (issue 8); it was
#: 1800 steps (now effort 6) until issue 8's second round, then 850 until its
#: fifteenth: once the best synthesis of the frozen phase is kept (``KEEP_BEST``) longer
#: fits pay again: 1200 steps lowered the fit's objective on kodim01/05/15/23 by 1.9 /
#: 2.6 / 3.0 / 6.7 % on average at qualities 10 / 45 / 70 / 90 (``round15_study.md``),
#: and needed 4.3 % fewer bits on the 24 Kodak images, for a 21 % longer encode (66.2 s
#: median with 1 thread against 54.6 s; fast_encoding.md, round 15)
EFFORT_STEPS = {1: 60, 2: 150, 3: 400, 4: 600, 5: 1200, 6: 1800, 7: 2700, 8: 3600, 9: 5000}
#: the step counts above are those of a fit with this fraction of coarse (quarter-cost)
#: steps; a fit with another fraction gets the step count of equal time
BUDGET_COARSE = 0.85
LR_LATENTS = 0.05
LR_LATENTS_MID = 0.1
#: 0.1 (= ``LR_LATENTS_MID``) until issue 8's thirteenth round. Whole kodim01/05/15/23
#: at 850 steps: 0.2 lowered the fit's objective ``MSE + lambda bpp`` by 13.5-25.3 %
#: at quality 90 and by 7 % on average at 70 (-11.2 .. +1.8 %), but raised it by
#: 2.6-10.3 % at 45; 0.3 and 0.4 did no better at 90 and worse at 70
#: (``latent_lr_study.md``)
#: Issue 8's twenty-first round raised the rate at quality 90 to 0.3 / 0.4 (rising
#: from 0.2 at 70): the fit's objective there fell by 3.4 / 3.7 % on the 24 Kodak
#: images, but the quality-90 point only moved up the same curve (BD-rate against
#: round 20 0.0 %), and against JPEG the longer PSNR range read worse (-27.3 %
#: against -28.1 %): not kept (``latent_lr_study.md``, round 21)
LR_LATENTS_HIGH = 0.2
LR_NETS = 0.01
LR_NETS_HIGH = 0.003
LR_CTX = 0.05
#: Adam's moment decay rates for the latents, networks and context model
ADAM_BETAS = (0.9, 0.999)
#: the optimiser of the synthesis weight matrices: "soap" (:mod:`.soap`; biases
#: and quantizer steps stay with Adam) or "adam" (with the rest). Whole kodim01,
#: 05, 15, 23 at qualities 30 and 70 (issue 8, round 7): SOAP lowered the fit's
#: objective ``MSE + lambda bpp`` by 8.3 % on average (7 of 8 fits) at the same
#: CPU time per step; on all 24 Kodak images -4.3 % bits at the default budget. Budgets
#: above ``SOAP_MAX_BUDGET`` steps keep Adam: with SOAP the ``slow`` preset (2700 steps)
#: needed 10.6 % more bits on kodim01 and kodim23 (both worse); the 1200-step
#: default keeps SOAP (``budget_study.md``: measured with it)
NETS_OPTIMIZER = "soap"
SOAP_MAX_BUDGET = 1200
SOAP_BETAS = (0.95, 0.95)
#: hidden widths of the synthesis (the first fit's (16, 16) until issue 8's tenth
#: round). Whole kodim01/05/15/23 at qualities 25 and 70, 850-step budget, each fit
#: read against the (16, 16) curve of its image (``study_table --curve``): (24, 24)
#: -8.0 / -13.4 % bits but 55 % more CPU time in float32; with the synthesis in
#: bfloat16 (``CPU_BF16``) -7.0 / -8.7 % in the time of the float32 (16, 16) fit.
#: (40,), (16, 16, 16) and (32, 16) did worse or cost more (fast_encoding.md, round 10)
WIDTHS = (24, 24)
SIGMA_INIT = 24.0
SIGMA_GAIN = 16.0
#: 0.85 until issue 8's third round: tuned at 1800 steps, it left ~130 full-resolution
#: steps at 850 and low qualities spent bits a converged fit would not (kodim01 +
#: kodim23 at 850 steps: BD-rate against JPEG +46.6 % with 0.85, +17.2 % with 0.6)
COARSE_END = 0.6
COARSE_HIGH = 0.5
COARSE_MIN_PIXELS = 256 * 256
#: every this many full-resolution steps (from the one where level 0 joins, for
#: images with a coarse phase) the context model is refitted to the hard-rounded
#: latents by ``CTX_REFIT_STEPS`` rate-only steps (:func:`.context_fit.fit_context`):
#: fitted alongside the latents it lags them by up to a third of their code length
#: (kodim01, quality 60), and the latents train against that wrong rate. On 256x256
#: crops of kodim01/05/15/23 (1000-step budget) the fit's objective fell by 1.8-13.4 %
#: in 7 of 8 fits at qualities 30 and 60 (rose by 0.3 % in one) and changed by
#: -0.3..-1.0 % at quality 10, for about 10 % more CPU time
CTX_REFIT_EVERY = 50  # 0: no refits
CTX_REFIT_STEPS = 20
#: the synthesis of the fit's steps in bfloat16 on CPUs with native bfloat16
#: arithmetic (torch's autocast): its passes over the per-pixel activations are
#: memory-bound, and half-width values make the synthesis's forward and backward
#: about 1.7 times faster with widths (16, 16) and 2 times with (24, 24) (768x512,
#: 1 thread). The stored model is unchanged
#: (float32 weights and steps, quantized as before) and decoding stays in
#: float32; only the fit's own forward and backward are rounded.
CPU_BF16 = True
#: torch's deterministic mode also fills every new CUDA allocation with NaN (so
#: that reads of uninitialised memory show); the fit reads none, and the fills
#: were about 250 of 645 kernels per step on an H100 (round 4, run 4)
CUDA_FILL_UNINITIALIZED = False
#: levels (the finest first) whose latents, rounded at ``FREEZE``, are moved by one
#: after the last step where that lowers the fit's objective (:mod:`.rdo`; 0: plain
#: rounding), and how many sweeps over them (each sweep starts from the last one's
#: latents, with the same context model; the context model is refitted once, after
#: the last). Three levels and one sweep in issue 8's eleventh round; all levels and
#: two sweeps in its twelfth: on the same fits of kodim01/05/15/23 at qualities 10,
#: 45 and 90 the objective fell by a further 1.0-10.7 % (3.4 % mean), for about 3 s
#: more per Kodak image with both cores (fast_encoding.md, round 12)
RDO_LEVELS = 7
RDO_SWEEPS = 2
#: sweeps from quality ``RDO_HIGH_QUALITY`` up, where the latents move further (issue 8's
#: thirteenth round, same fits of kodim01/05/15/23 at qualities 70 and 90: a third sweep
#: lowered the objective by a further 0.8-2.8 %, for about 2 s with 1 thread;
#: ``rdo_sweeps_study.md``); below it a third sweep over three levels did little in round 12
RDO_SWEEPS_HIGH = 3
RDO_HIGH_QUALITY = 70
#: after the freeze the fit keeps the synthesis (weights, biases, LSQ steps) of the
#: step with the lowest distortion, not the last one (:mod:`.keep_best`): traced every
#: 5 steps, kodim23 at quality 45 ended 0.22 dB below the best traced step at the
#: 850-step budget and 1.38 dB below at 1700. Whole kodim01/05/15/23 at qualities 10,
#: 45 and 90: the fit's objective fell by 0.9 / 1.2 / 0.1 % on average
KEEP_BEST = True
#: after the freeze, and again after the rounding refinement, the output layer's
#: integers are re-chosen by coordinate descent on its quadratic distortion
#: (:mod:`.polish`). With ``KEEP_BEST``, whole kodim01/05/15/23 at qualities 10, 45
#: and 90: the fit's objective fell by 1.5 / 2.1 / 2.7 % on average, in all 12 fits
POLISH = True
#: when the finest level joins after the coarse phase, the synthesis's weights that read
#: it (its column in the first layer and in the output layer's skip path) start as this
#: multiple of those that read level 1 (:func:`join_finest_level`; 0: as initialised)
#: instead of their untrained initial values (its input was zero until then, so they
#: never learned). Whole kodim01/05/15/23 at qualities 10, 45 and 90, seeds 0 and 1
#: (issue 8's eighteenth round, ``join_study.md``): with 0.5 the fit's objective fell by
#: 1.4 % on average (19 of 24 fits; 1.0: 1.1 %, 15 of 24; 0.25 as 0.5), most from quality 45 up, and
#: the two seeds' results differ less (3.5 -> 2.5 % on average; kodim23 at quality 45
#: with seed 1, the worst fit of the budget study, -15.3 %)
JOIN_FROM_LEVEL1 = 0.5


def rdo_sweeps(quality: float) -> int:
    """How many sweeps of the rounding refinement a fit at ``quality`` runs."""
    return RDO_SWEEPS_HIGH if quality >= RDO_HIGH_QUALITY else RDO_SWEEPS


def ctx_gain(device) -> torch.Tensor:
    """(N_CTX_PARAMS,) the gain of each context parameter: the fit trains the
    real parameters divided by it (1 for the mean weights, ``SIGMA_GAIN`` for
    the scale terms)."""
    gain = torch.ones(N_CTX_PARAMS, device=device)
    gain[N_FEATURES + 1 :] = SIGMA_GAIN
    return gain


def coarse_fraction(quality: float) -> float:
    """Fraction of the steps fitted at half resolution: ``COARSE_END`` up to
    quality 30, falling linearly to ``COARSE_HIGH`` at quality 60 and above, where the
    finest level carries detail that needs full-resolution steps (measured when
    ``COARSE_END`` was 0.85, at 1800 steps: kodim01 at quality 55 gave 24.9 dB
    at 0.71 bpp with 0.85, 25.4 dB at 0.65 bpp with 0.6)."""
    return float(min(COARSE_END, max(COARSE_HIGH, COARSE_END - (quality - 30) * (COARSE_END - COARSE_HIGH) / 30)))


def _step_cost(coarse: float) -> float:
    """Cost of an average step relative to a full-resolution one."""
    return coarse / 4 + (1 - coarse)


def schedule(budget: int, quality: float, big: bool) -> tuple[int, int]:
    """Steps of a fit and how many of them are coarse, for a budget of
    ``budget`` steps (``EFFORT_STEPS``). Small images (``big`` false) are cheap
    per step and lose detail in a half-resolution fit: all their steps are at
    full resolution. Big ones spend :func:`coarse_fraction` of the steps at
    half resolution, with the step count that takes the time of ``budget``
    steps at ``BUDGET_COARSE``."""
    if not big:
        return budget, 0
    frac = coarse_fraction(quality)
    steps = round(budget * _step_cost(BUDGET_COARSE) / _step_cost(frac))
    return steps, int(frac * steps)


def nets_lr(quality: float) -> float:
    """Learning rate of the networks: ``LR_NETS`` up to quality 35, falling
    log-linearly to ``LR_NETS_HIGH`` at quality 55 and above. At low rates a
    fast synthesis finds the few latents worth coding; at higher rates the slow
    one converges to a sharper fit (kodim23, quality 55: 31.07 dB at 0.462 bpp
    with 0.003 against 30.51 dB at 0.464 bpp with 0.01; at quality 35 0.003
    was worse: 29.68 dB at 0.283 bpp against 30.02 at 0.245)."""
    return _log_ramp(quality, 35, 55, LR_NETS, LR_NETS_HIGH)


def latents_lr(quality: float) -> float:
    """Learning rate of the latents: ``LR_LATENTS`` up to quality 25, rising
    log-linearly to ``LR_LATENTS_MID`` at quality 45 and on to ``LR_LATENTS_HIGH``
    at quality 70 and above. At 850 steps (kodim01 + kodim23, whole images) the
    mid one lowered the fit's own objective ``MSE + lambda bpp`` by 3.6-6.3 % at
    quality 45, 17-20 % at 70 and 90 against ``LR_LATENTS``, and raised it by up to
    4.9 % at 10 and 25; from quality 70 the high one lowers it further (see
    ``LR_LATENTS_HIGH``)."""
    if quality <= 45:
        return _log_ramp(quality, 25, 45, LR_LATENTS, LR_LATENTS_MID)
    return _log_ramp(quality, 45, 70, LR_LATENTS_MID, LR_LATENTS_HIGH)


def _log_ramp(quality: float, q0: float, q1: float, a: float, b: float) -> float:
    """``a`` up to quality ``q0``, ``b`` from ``q1``, log-linear between."""
    t = min(1.0, max(0.0, (quality - q0) / (q1 - q0)))
    return a * (b / a) ** t


def quality_to_lambda(quality: float) -> float:
    """lambda of the rate term: 10**(-1.5 - 3 q / 100), from 3e-2 at q=0 to 3e-5 at q=100."""
    return 10.0 ** (-1.5 - 3.0 * quality / 100.0)


@dataclass
class Fitted:
    sections: list
    n_latents: int
    n_params: int
    stats: dict = field(default_factory=dict)


def join_finest_level(layers, arch: GridArch, scale: float) -> None:
    """Set, in place, the synthesis's weights that read level 0 to ``scale``
    times those that read level 1: column 0 of the first layer and, when the
    output layer has the skip path (an ``arch`` with hidden layers: it reads
    ``[hidden, latents]``), its level-0 column. Level 0 then starts as a finer
    echo of level 1 in what the synthesis makes of it (its latents are near
    zero when it joins, so the image hardly jumps)."""
    with torch.no_grad():
        first = layers[0][0]
        first[:, 0] = scale * first[:, 1]
        if arch.widths:
            out, skip = layers[-1][0], arch.widths[-1]
            out[:, skip] = scale * out[:, skip + 1]


def _init_layers(arch: GridArch, gen: torch.Generator, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layers = []
    shapes = arch.layer_shapes()
    for k, (o, i) in enumerate(shapes):
        bound = 1.0 / math.sqrt(i)
        scale = 0.1 if k == len(shapes) - 1 else 1.0
        w = (torch.rand((o, i), generator=gen) * 2 - 1) * bound * scale
        b = torch.zeros(o)
        layers.append((w.to(device).requires_grad_(), b.to(device).requires_grad_()))
    return layers


def fit_grid(image: np.ndarray, opts: EncodeOptions, progress=None, trace=None, hard_trace=None,
             hard_every: int = 25) -> Fitted:
    """Fit, quantize and serialise.

    For studies: ``trace(step, mse, bits)`` receives the loss terms of every
    step as trained (relaxed latents; in the coarse phase, at half
    resolution); ``hard_trace(step, mse, bits)`` receives them every
    ``hard_every`` steps and after the last one, with the latents hard-rounded
    and clamped and the context model quantized as they would be stored, on
    the full image (the "true" loss of the SGA+ paper's convergence plots; one
    extra forward pass each). The refinement after the last step (``RDO_LEVELS``)
    is not traced: its objective before and after is in ``stats``.
    """
    t0 = time.perf_counter()
    device = torch.device(opts.resolved_device())
    if device.type == "cuda":
        # cuBLAS is deterministic with a fixed workspace (read when its first handle is made)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    height, width, channels = image.shape
    arch = GridArch(default_levels(height, width), WIDTHS, channels)
    steps = EFFORT_STEPS[opts.effort]
    lam = quality_to_lambda(opts.quality)
    lo, hi = latent_range(opts.bits)
    gen = torch.Generator().manual_seed(opts.seed)
    dev_gen = gen if device.type == "cpu" else torch.Generator(device).manual_seed(opts.seed)
    round_fn = resolve(rounding_methods()[opts.rounding])

    # (C, H, W) planes, as synthesize_planes renders
    target = torch.from_numpy(np.array(image)).to(device=device, dtype=torch.float32).permute(2, 0, 1).contiguous() / 255.0
    shapes = arch.grid_shapes(height, width)
    table = ContextTable(shapes, device)
    layers = _init_layers(arch, gen, device)
    # the latents of all levels are one flat tensor (level 0 first, as the rate
    # model reads them): rounding, the rate and Adam each take a few operations
    # per step whatever the number of levels
    flat = torch.cat([((torch.rand(s, generator=gen) - 0.5) * LATENT_INIT).reshape(-1) for s in shapes])
    flat = flat.to(device).requires_grad_()
    n0 = table.sizes[0]
    # the trainable context parameters are the real ones divided by a gain, so
    # that Adam's roughly constant step size suits both the mean weights (latent
    # units) and the scale terms (scale-index units, 0..63)
    gain = ctx_gain(device)
    ctx_train = torch.zeros((arch.levels, N_PASSES, N_CTX_PARAMS), device=device)
    ctx_train[:, :, 2 * N_FEATURES + 1] = SIGMA_INIT / SIGMA_GAIN
    ctx_train.requires_grad_()
    quant = [(LSQ(opts.bits).to(device), LSQ(BIAS_BITS).to(device)) for _ in layers]
    soap = NETS_OPTIMIZER == "soap" and steps <= SOAP_MAX_BUDGET
    # Adam's share of the networks: everything but the weight matrices when SOAP has those
    net_params = [p for w, b in layers for p in ((b,) if soap else (w, b))] + [q.step for pair in quant for q in pair]
    # both quality-dependent LRs were measured on Kodak-size images with the
    # coarse phase; short fits of small images keep the low-quality ones
    big = arch.levels >= 2 and height * width >= COARSE_MIN_PIXELS
    lr_nets = nets_lr(opts.quality) if big else LR_NETS
    lr_latents = latents_lr(opts.quality) if big else LR_LATENTS
    opt = torch.optim.Adam(
        [
            {"params": [flat], "lr": lr_latents},
            {"params": net_params, "lr": lr_nets},
            {"params": [ctx_train], "lr": LR_CTX},
        ],
        betas=ADAM_BETAS,
        fused=device.type == "cuda",  # one kernel per step instead of a dozen per parameter group
    )
    base_lr = [lr_latents, lr_nets, LR_CTX]
    groups = list(opt.param_groups)
    opts_all = [opt]
    if soap:
        opt_w = Soap([w for w, _ in layers], lr=lr_nets, betas=SOAP_BETAS)
        opts_all.append(opt_w)
        groups += opt_w.param_groups
        base_lr.append(lr_nets)
    n_pix = height * width

    steps, coarse_steps = schedule(steps, opts.quality, big)
    if coarse_steps:
        # the coarse phase fits levels >= 1 to the image downsampled to level 1's
        # grid: a quarter of the pixels, so each step costs about a quarter
        h1, w1 = arch.grid_shapes(height, width)[1]
        target_coarse = F.interpolate(target[None], size=(h1, w1), mode="area")[0]
        zeros_coarse = torch.zeros((h1, w1), device=device)
        zeros_0 = torch.zeros(n0, device=device)

    def refit_context(ints, n_steps):
        """The context parameters fitted to integer latents alone (in place); their bits."""
        best, bits = fit_context(ints, ctx_train, gain, table, lo, hi, steps=n_steps)
        with torch.no_grad():
            ctx_train.copy_(best)
        return bits

    rdo_stats, polish_stats = {}, {}
    best = None
    decay = opts.resolved_tau_decay()
    with _deterministic(device):
        frozen = None
        for step in range(steps):
            p = step / steps
            cos = 0.5 * (1 + math.cos(math.pi * p))
            for g, lr in zip(groups, base_lr):
                g["lr"] = lr * (0.02 + 0.98 * cos)
            if p >= QAT_START and not quant[0][0].enabled:
                for (w, b), (qw, qb) in zip(layers, quant):
                    qw.init_from(w.detach())
                    qb.init_from(b.detach())
            if p >= FREEZE and frozen is None:
                frozen = torch.round(flat.detach()).clamp(lo, hi)
                opt.param_groups[0]["params"] = []
                # the rate now depends on the context parameters only: fit them
                # once, and spare the remaining steps the rate term
                frozen_bits = refit_context(frozen, CTX_FIT_STEPS)
                opt.param_groups[2]["params"] = []
                if KEEP_BEST:
                    best = KeepBest([t for (w, b), (qw, qb) in zip(layers, quant) for t in (w, b, qw.step, qb.step)])
            coarse = step < coarse_steps
            if JOIN_FROM_LEVEL1 and coarse_steps and step == coarse_steps:
                join_finest_level(layers, arch, JOIN_FROM_LEVEL1)
            if (CTX_REFIT_EVERY and frozen is None and step > 0 and step >= coarse_steps
                    and (step - coarse_steps) % CTX_REFIT_EVERY == 0):
                refit_context(torch.round(flat.detach()).clamp(lo, hi), CTX_REFIT_STEPS)
            rstep = RoundingStep(step, steps, temperature(p, decay, opts.tau_max), opts, dev_gen)
            if frozen is not None:
                yq = frozen
            elif coarse:
                yq = torch.cat([zeros_0, round_fn(flat[n0:], rstep)])
            elif coarse_steps:
                # level 0 joins after the coarse phase: its temperature restarts there
                p0 = (step - coarse_steps) / (steps - coarse_steps)
                step0 = replace(rstep, tau=temperature(p0, decay, opts.tau_max))
                yq = torch.cat([round_fn(flat[:n0].view(shapes[0]), step0).reshape(-1), round_fn(flat[n0:], rstep)])
            else:
                yq = round_fn(flat, rstep)
            grids = level_grids(yq, table.sizes, shapes)
            qlayers = quantized_layers(layers, quant)
            with synthesis_precision(device):
                if coarse:
                    out = synthesize_planes([zeros_coarse] + grids[1:], qlayers, (h1, w1))
                else:
                    out = synthesize_planes(grids, qlayers, (height, width))
            mse = torch.mean((out.float() - (target_coarse if coarse else target)) ** 2)
            if frozen is None:
                bits = flat_bits(yq, ctx_train * gain, table, lo, hi, first=1 if coarse else 0)
            else:
                bits = frozen_bits
                if best is not None:
                    best.offer(mse)
            loss = mse + lam * bits / n_pix
            for o in opts_all:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts_all:
                o.step()
            with torch.no_grad():
                flat.clamp_(lo - 0.49, hi + 0.49)
            if trace is not None:
                trace(step, mse.item(), bits.item())
            if hard_trace is not None and (step % hard_every == 0 or step == steps - 1):
                hard_trace(step, *_hard_loss(flat, table, shapes, layers, quant, ctx_train * gain, target, lo, hi))
            if progress is not None:
                progress(step + 1, steps)
        if best is not None:
            # the last step's update has not been scored yet
            with torch.no_grad(), synthesis_precision(device):
                qlayers = quantized_layers(layers, quant)
                out = synthesize_planes(level_grids(frozen, table.sizes, shapes), qlayers, (height, width))
            best.offer(torch.mean((out.float() - target) ** 2))
            best.restore()
        if POLISH and frozen is not None:
            polish_stats["mse_change"] = polish_output(level_grids(frozen, table.sizes, shapes), layers, quant,
                                                       target, (height, width))

        if RDO_LEVELS and frozen is not None:
            # the latents as rounded at the freeze, moved where the final synthesis
            # says a step pays; the context model refitted to the result
            t_rdo = time.perf_counter()
            with torch.no_grad():
                qnow = quantized_layers(layers, quant)
            for sweep in range(rdo_sweeps(opts.quality)):
                frozen, st = refine(frozen, table.sizes, shapes, qnow, target, ctx_train.detach() * gain,
                                    table, lo, hi, lam, RDO_LEVELS)
                rdo_stats = {"j_before": rdo_stats.get("j_before", st["j_before"]), "j_after": st["j_after"],
                             "moved": rdo_stats.get("moved", 0) + st["moved"], "sweeps": sweep + 1}
                if not st["moved"]:
                    break
            if rdo_stats["moved"]:
                refit_context(frozen, CTX_FIT_STEPS)
                if POLISH:
                    polish_stats["mse_change_after_rdo"] = polish_output(level_grids(frozen, table.sizes, shapes),
                                                                         layers, quant, target, (height, width))
            flat = frozen
            rdo_stats["seconds"] = time.perf_counter() - t_rdo
    fit_seconds = time.perf_counter() - t0
    model, est_bits = _export(arch, opts.bits, layers, quant, ctx_train.detach() * gain, flat, table, shapes, lo, hi)
    modl, lats = write_model(model), write_latents(model)
    _verify(model, modl, lats, height, width)
    recon = render(model.weights, model.latents, (width, height))
    mse8 = float(np.mean((recon.astype(np.float64) - image) ** 2))
    stats = {
        "steps": steps,
        "lambda": lam,
        "fit_seconds": fit_seconds,
        "estimated_latent_bits": est_bits,
        "latent_section_bytes": len(lats),
        "model_section_bytes": len(modl),
        "psnr": 10 * math.log10(255**2 / mse8) if mse8 > 0 else float("inf"),
        "device": device.type,
        **{f"rdo_{k}": v for k, v in rdo_stats.items()},
        **{f"polish_{k}": v for k, v in polish_stats.items()},
    }
    return Fitted(
        sections=[(TAG_MODEL, modl), (TAG_LATENTS, lats)],
        n_latents=arch.n_latents(height, width),
        n_params=arch.n_weights(),
        stats=stats,
    )


def synthesis_precision(device: torch.device):
    """The context of the fit's synthesis: bfloat16 autocast on a CPU with
    native bfloat16 (``CPU_BF16``), float32 elsewhere (CUDA, older CPUs, where
    bfloat16 would be emulated and slower)."""
    if CPU_BF16 and device.type == "cpu" and _cpu_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=1)
def _cpu_bf16() -> bool:
    """Whether this CPU has native bfloat16 (asked once: the fit enters the
    precision context every step)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def _deterministic(device: torch.device):
    """On CUDA, torch's deterministic algorithms for the loop, so that the same
    input, options and seed write the same bytes there too (the fit's own
    gathers and upsampling are deterministic by construction; this covers the
    rest, and warns rather than fails where torch has no deterministic kernel).
    The caller's setting is restored after. CPU kernels are deterministic already."""
    if device.type != "cuda":
        yield
        return
    import torch.utils.deterministic as det

    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    det.fill_uninitialized_memory = CUDA_FILL_UNINITIALIZED
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        det.fill_uninitialized_memory = fill


@torch.no_grad()
def _hard_loss(flat, table, shapes, layers, quant, ctx, target, lo, hi) -> tuple[float, float]:
    """MSE and latent bits with the latents and context model as they would be
    stored (the weights as they are at this step: LSQ-quantized from ``QAT_START``)."""
    ints = torch.round(flat).clamp(lo, hi)
    ctx = quantize_ctx(ctx) / CTX_FRAC
    qlayers = quantized_layers(layers, quant)
    out = synthesize_planes(level_grids(ints, table.sizes, shapes), qlayers, tuple(target.shape[1:]))
    return torch.mean((out - target) ** 2).item(), flat_bits(ints, ctx, table, lo, hi).item()


@torch.no_grad()
def _export(arch, bits, layers, quant, ctx, flat, table, shapes, lo, hi):
    ints_flat = torch.round(flat).clamp(lo, hi)
    ints = level_grids(ints_flat, table.sizes, shapes)
    ctx_q = quantize_ctx(ctx)
    # passes without latents: their parameters are not stored (read back as zero)
    ctx_q[~torch.from_numpy(stored_passes(shapes, N_PASSES)).to(ctx_q.device)] = 0
    est_bits = float(flat_bits(ints_flat, ctx_q / CTX_FRAC, table, lo, hi))
    weights = []
    for (w, b), (qw, qb) in zip(layers, quant):
        wq, ws = qw.integers(w)
        bq, bs = qb.integers(b)
        weights.append((wq.cpu().numpy(), ws, bq.cpu().numpy(), bs))
    model = GridModel(
        arch=arch,
        bits=bits,
        weights=weights,
        ctx=ctx_q.cpu().numpy().astype(np.int16),
        latents=[y.cpu().numpy().astype(np.int64) for y in ints],
    )
    return model, est_bits


def _verify(model: GridModel, modl: bytes, lats: bytes, height: int, width: int) -> None:
    """Decode what was written and check it reproduces the quantized model."""
    n_params = model.arch.n_weights()
    arch, weights, ctx = read_model(modl, model.bits, model.arch.channels, n_params, (height, width))
    ok = arch == model.arch and np.array_equal(ctx, model.ctx.astype(np.int64))
    for (a, sa, b, sb), (c, sc, d, sd) in zip(weights, model.weights):
        ok = ok and np.array_equal(a, c) and np.array_equal(b, d) and sa == np.float32(sc) and sb == np.float32(sd)
    grids = read_latents(lats, arch, ctx, model.bits, height, width)
    ok = ok and all(np.array_equal(g, y) for g, y in zip(grids, model.latents))
    if not ok:
        raise AniVerifyError("the written stream does not decode to the fitted model")
