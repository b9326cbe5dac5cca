"""Decoding of grid images: sections -> integers -> network -> pixels."""
from __future__ import annotations

import numpy as np

from ..errors import AniFormatError, AniOptionError
from .bitstream import TAG_LATENTS, TAG_MODEL, read_latents, read_model


def load_model(header, sections):
    """Entropy-decode a grid model: (arch, weights, latents)."""
    for tag in (TAG_MODEL, TAG_LATENTS):
        if tag not in sections:
            raise AniFormatError(f"corrupt .ani file: required section {tag.decode()} missing")
    for tag in sections:
        # PNG's rule: a tag starting upper-case is critical; one we do not know
        # means the file needs a newer decoder, not that it can be half-read
        if tag[:1].isupper() and tag not in (TAG_MODEL, TAG_LATENTS):
            raise AniFormatError(f"this file has a critical section {tag!r} this decoder does not know; upgrade ani")
    arch, weights, ctx = read_model(sections[TAG_MODEL], header.bits, header.channels, header.n_params,
                                    (header.height, header.width), header.version)
    if arch.n_latents(header.height, header.width) != header.n_latents:
        raise AniFormatError(
            f"corrupt .ani file: header declares {header.n_latents} latents, the model has "
            f"{arch.n_latents(header.height, header.width)}"
        )
    latents = read_latents(sections[TAG_LATENTS], arch, ctx, header.bits, header.height, header.width, header.version)
    return arch, weights, latents


def render(weights, latents, size, device="cpu") -> np.ndarray:
    """Run the network at ``size = (width, height)``; returns uint8 (H, W, C)."""
    import torch

    from .arch import synthesize

    width, height = size
    with torch.no_grad():
        dev = torch.device(device)
        lat = [torch.from_numpy(y.astype(np.float32)).to(dev) for y in latents]
        layers = []
        for wq, ws, bq, bs in weights:
            w = torch.from_numpy(wq.astype(np.float32)).to(dev) * torch.tensor(ws, dtype=torch.float32, device=dev)
            b = torch.from_numpy(bq.astype(np.float32)).to(dev) * torch.tensor(bs, dtype=torch.float32, device=dev)
            layers.append((w, b))
        out = synthesize(lat, layers, (height, width))
        return torch.round(out.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()


def decode_grid(header, sections, size, subnet, device="cpu") -> np.ndarray:
    if subnet not in (None, "full"):
        raise AniOptionError(f"invalid option subnet={subnet!r}: allowed full (grid images hold one network)")
    _, weights, latents = load_model(header, sections)
    return render(weights, latents, size, device)
