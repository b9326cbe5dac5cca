"""Where the bits of a grid ``.ani`` file go: its sections, and the latents'
code length level by level and pass by pass under the file's own context model.

    python -m benchmarks.file_anatomy FILE.ani [FILE.ani ...]

The code length is the coder's ideal one (:func:`core.entropy.cost_bits` of the
models the context model picks), within a few bytes of the section's size.
Round 8 of issue 8 found the checkerboard's anchors this way
(``benchmarks/results/fast_encoding.md``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def anatomy(data: bytes) -> dict:
    """Sections' sizes and, per (level, pass), the latent count, the nonzero
    count and the ideal code length in bits."""
    from core.container import parse
    from core.entropy import _groups, cost_bits
    from core.grid.bitstream import TAG_LATENTS, TAG_MODEL, latent_range, read_latents, read_model
    from core.grid.context import pass_models, passes_of

    header, sections = parse(data)
    if header.model != "grid":
        raise SystemExit(f"not a grid file (model {header.model})")
    arch, _, ctx = read_model(sections[TAG_MODEL], header.bits, header.channels, header.n_params,
                            (header.height, header.width), header.version)
    grids = read_latents(sections[TAG_LATENTS], arch, ctx, header.bits, header.height, header.width, header.version)
    lo, hi = latent_range(header.bits)
    passes = []
    for level, phase, rows, cols, c, s, f in pass_models(grids, ctx, lo, hi, passes_of(header.version)):
        if not rows.size:  # version 3: the even lattice of a small level is one pass
            continue
        y = grids[level][rows, cols]
        bits = sum(cost_bits(y[at] - c[at], si, fi, hi - lo + 1) for si, fi, at in _groups(s, f))
        passes.append({"level": level, "pass": phase, "latents": int(rows.size),
                       "nonzero": int(np.count_nonzero(y)), "bits": float(bits)})
    return {"version": header.version, "bytes": len(data), "pixels": header.width * header.height,
            "sections": {t.decode(): len(d) for t, d in sections.items()}, "passes": passes}


def report(name: str, a: dict) -> str:
    total = sum(p["bits"] for p in a["passes"])
    out = [f"{name}: version {a['version']}, {a['bytes']} bytes = {a['bytes'] * 8 / a['pixels']:.4f} bpp; sections "
           + ", ".join(f"{t} {n}" for t, n in a["sections"].items()), "",
           "| level | pass | latents | nonzero | bits | bits / latent | share |", "|---|---|---|---|---|---|---|"]
    for p in a["passes"]:
        out.append(f"| {p['level']} | {p['pass']} | {p['latents']} | {p['nonzero']} | {p['bits']:.1f} | "
                   f"{p['bits'] / max(p['latents'], 1):.3f} | {100 * p['bits'] / max(total, 1e-9):.1f} % |")
    out.append(f"\nlatents: {total:.0f} bits ({total / 8:.0f} bytes)")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for path in args.files:
        print(report(path.name, anatomy(path.read_bytes())))
        print()


if __name__ == "__main__":
    main()
