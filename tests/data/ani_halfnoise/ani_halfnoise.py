"""A third-party rounding method, as a separate package would ship it.

Installed for ``tests/test_rounding_plugin.py`` through a real ``ani`` entry
point (a ``.dist-info`` with ``entry_points.txt``); it never touches ``core``.
``halfnoise`` adds uniform noise of half the usual width, then rounds
straight-through for the last tenth of the fit. Every call appends the step
index to the file named by ``ANI_HALFNOISE_LOG``, so the test can see that the
fit really ran it.
"""
import os

import torch

from core.hooks import hookimpl


@hookimpl
def ani_rounding_methods():
    return {"halfnoise": "ani_halfnoise:halfnoise"}


def halfnoise(y, step):
    log = os.environ.get("ANI_HALFNOISE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{step.step} {step.steps}\n")
    if step.progress >= 0.9:
        return y + (torch.round(y) - y).detach()
    u = torch.rand(y.shape, generator=step.generator, device=y.device, dtype=y.dtype) - 0.5
    return y + 0.5 * u
