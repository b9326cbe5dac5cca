"""How many bits a richer context model could save on a file's latents: a bound
for choosing the next entropy model (issue 8).

    python -m benchmarks.context_bound FILE.ani [FILE.ani ...] [--steps 400]

The latents are the file's own, held fixed; each model below is fitted to them
by its code length (float parameters, not quantised or stored: their cost is
left out, and the latents never adapt to the model, which a real fit would
do). Models, all on the coding order of format version 3 (five passes):

* ``file``: the file's own linear model as coded (the section's size, within
  a few bytes);
* ``lin5``: the same linear model refitted in float (what quantisation and the
  fit leave on the table);
* ``lin_rich``: linear, on every neighbour within distance 3 that is decoded
  before the pass (the same positions for the whole pass) and the parent's
  3x3 neighbourhood;
* ``mlp_rich``: a small MLP (two hidden layers of 16, ReLU) on the same
  features and a one-hot of the level, one per pass shared across levels
  (Cool-chic's ARM is one MLP for all levels).

The linear models are fitted on at most 20,000 latents per level and pass
(a fixed random subset), the MLP on 20,000 of the pass's latents over all
levels, by Adam (``--steps``, cosine from 0.05); the bits are then counted on
every latent.

Bits are the Laplace code length of the fit (:func:`core.grid.rate.laplace_bits`),
the scale index continuous.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

RADIUS = 3
HIDDEN = 16


def known_offsets(passes: int, large: bool) -> list[list[tuple[int, int]]]:
    """For each pass, the offsets within ``RADIUS`` whose neighbour is decoded
    before that pass at every position of the pass (away from the borders)."""
    from core.grid.context import pass_masks

    n = 128 if large else 64  # 128x128 is a level the version 3 rule splits
    masks = pass_masks((n, n), passes)
    out = []
    known = np.zeros((n, n), dtype=bool)
    inner = np.zeros((n, n), dtype=bool)
    inner[16:-16, 16:-16] = True
    for mask in masks:
        at = np.argwhere(mask & inner)
        offs = []
        if at.size:
            for di in range(-RADIUS, RADIUS + 1):
                for dj in range(-RADIUS, RADIUS + 1):
                    if (di, dj) != (0, 0) and known[at[:, 0] + di, at[:, 1] + dj].all():
                        offs.append((di, dj))
        out.append(offs)
        known |= mask
    return out


def rich_features(grid: np.ndarray, parent: np.ndarray | None, rows, cols, offs) -> np.ndarray:
    """(F, n): the known neighbours at ``offs`` and the parent's 3x3 neighbourhood."""
    g = np.pad(grid, RADIUS)
    feats = [g[rows + RADIUS + di, cols + RADIUS + dj] for di, dj in offs]
    if parent is None:
        feats += [np.zeros(rows.size, dtype=np.int64)] * 9
    else:
        p = np.pad(parent, 1)
        feats += [p[rows // 2 + 1 + di, cols // 2 + 1 + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)]
    return np.stack(feats).astype(np.float32)


def fit_bits(y, feats, model: str, steps: int, radius: int, sample: int = 20000, lr: float = 0.05) -> float:
    """Fit one model per group of ``feats`` (list of (F, n) arrays of one pass,
    several levels), jointly, on at most ``sample`` entries per group (a fixed
    random subset); its total bits on all entries."""
    from core.grid.rate import laplace_bits

    rng = np.random.default_rng(0)
    sub = [rng.choice(v.size, sample, replace=False) if v.size > sample else np.arange(v.size) for v in y]

    n_f = feats[0].shape[0]
    torch.manual_seed(0)
    if model == "lin":
        # one linear model per group (level), as the format stores
        w = torch.zeros((len(feats), 2 * n_f + 2), requires_grad=True)
        with torch.no_grad():
            w[:, -1] = 24.0 / 16
        params = [w]
    else:
        net = torch.nn.Sequential(torch.nn.Linear(n_f, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, HIDDEN),
                                  torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 2))
        with torch.no_grad():
            net[-1].weight.mul_(0.1)
            net[-1].bias.copy_(torch.tensor([0.0, 1.5]))
        params = list(net.parameters())
    def bits(xs, ys):
        total = 0
        for g, (x, t) in enumerate(zip(xs, ys)):
            if model == "lin":
                p = w[g]
                mu = p[:n_f] @ x + p[n_f]
                sigma = 16 * (p[n_f + 1 : 2 * n_f + 1] @ x.abs() + p[-1])
            else:
                out = net(x.t())
                mu, sigma = out[:, 0], 16 * out[:, 1]
            total = total + laplace_bits(t, mu, sigma, radius).sum()
        return total

    xs = [torch.from_numpy(np.ascontiguousarray(f[:, k])) for f, k in zip(feats, sub)]
    ys = [torch.from_numpy(v[k].astype(np.float32)) for v, k in zip(y, sub)]
    opt = torch.optim.Adam(params, lr=lr)
    for i in range(steps):
        total = bits(xs, ys)
        opt.zero_grad()
        total.backward()
        opt.step()
        for gr in opt.param_groups:
            gr["lr"] = lr * 0.5 * (1 + np.cos(np.pi * (i + 1) / steps))
    with torch.no_grad():
        return float(bits([torch.from_numpy(f) for f in feats], [torch.from_numpy(v.astype(np.float32)) for v in y]))


def bound(data: bytes, steps: int) -> dict:
    from benchmarks.file_anatomy import anatomy
    from core.container import parse
    from core.grid.bitstream import TAG_LATENTS, TAG_MODEL, latent_range, read_latents, read_model
    from core.grid.context import features_at, pass_positions, passes_of, splits_even_lattice

    header, sections = parse(data)
    arch, _, ctx = read_model(sections[TAG_MODEL], header.bits, header.channels, header.n_params,
                            (header.height, header.width), header.version)
    grids = read_latents(sections[TAG_LATENTS], arch, ctx, header.bits, header.height, header.width, header.version)
    passes = passes_of(header.version)
    lo, hi = latent_range(header.bits)
    radius = hi - lo + 1
    file_bits = sum(p["bits"] for p in anatomy(data)["passes"])
    offs = {large: known_offsets(passes, large) for large in (False, True)}
    result = {"file": file_bits, "bytes": len(data), "pixels": header.width * header.height}
    for name, model in (("lin5", "lin"), ("lin_rich", "lin"), ("mlp_rich", "mlp")):
        total = 0.0
        for phase in range(passes):
            ys, fs = [], []
            for level, grid in enumerate(grids):
                rows, cols = pass_positions(grid.shape, passes)[phase]
                if not rows.size:
                    continue
                parent = grids[level + 1] if level + 1 < len(grids) else None
                ys.append(grid[rows, cols])
                if name == "lin5":
                    fs.append(features_at(grid, parent, phase, rows, cols, passes).astype(np.float32))
                else:
                    # small levels have fewer known neighbours in some passes: pad to the large set
                    large = offs[True][phase]
                    have = set(offs[splits_even_lattice(grid.shape)][phase])
                    f = rich_features(grid, parent, rows, cols, large)
                    f[[k for k, o in enumerate(large) if o not in have]] = 0
                    fs.append(f)
            if model == "mlp":
                # one MLP for all levels, told the level (one-hot)
                levels = [np.full((len(grids), y.size), 0, np.float32) for y in ys]
                for k, onehot in enumerate(levels):
                    onehot[k] = 1
                fs = [np.concatenate([f, l]) for f, l in zip(fs, levels)]
                total += fit_bits([np.concatenate(ys)], [np.concatenate(fs, 1)], model, steps, radius)
            else:
                total += fit_bits(ys, fs, model, steps, radius)
        result[name] = total
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args(argv)
    print("| file | bpp | latent bits: file | lin5 | lin_rich | mlp_rich |")
    print("|---|---|---|---|---|---|")
    for path in args.files:
        r = bound(path.read_bytes(), args.steps)
        f = r["file"]
        cells = " | ".join(f"{r[k]:.0f} ({100 * (r[k] / f - 1):+.1f} %)" for k in ("lin5", "lin_rich", "mlp_rich"))
        print(f"| {path.name} | {r['bytes'] * 8 / r['pixels']:.4f} | {f:.0f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
