"""The parameters at the lowest loss a fit has seen, kept on the device.

With the latents frozen, the fit's synthesis weights are LSQ-quantized at 4 bits
and a step that moves a weight across a rounding threshold changes the render at
once: the loss of the last step is one draw from a band about a dB of PSNR wide
(kodim23 at quality 45, issue 8's fourteenth round), not the best the fit found.
"""
from __future__ import annotations

import torch


class KeepBest:
    """Snapshots of ``params`` taken whenever :meth:`offer` sees a lower loss.

    The comparison and the copies are tensor operations (``torch.where``), so a
    fit on CUDA does not wait for the device each step.
    """

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.snap = [p.detach().clone() for p in params]
        self.loss = torch.full((), float("inf"), device=params[0].device)

    @torch.no_grad()
    def offer(self, loss: torch.Tensor) -> None:
        """``loss``: of the parameters as they are now (before this step's update)."""
        loss = loss.detach().float()
        better = loss < self.loss
        self.loss = torch.where(better, loss, self.loss)
        for s, p in zip(self.snap, self.params):
            s.copy_(torch.where(better, p.detach(), s))

    @torch.no_grad()
    def restore(self) -> None:
        """Put the best snapshot back into the parameters."""
        for s, p in zip(self.snap, self.params):
            p.copy_(s)
