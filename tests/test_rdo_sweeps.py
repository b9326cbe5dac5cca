"""benchmarks/rdo_sweeps.py: variants of the rounding refinement from one fit's state."""
from benchmarks import rdo_sweeps as S
from core.grid import fit as F
from plugin_support import kodak_crop


def test_variants_start_from_the_same_fit_and_only_lower_the_objective():
    image = kodak_crop("kodim23", box=(300, 200, 364, 248))
    own = F.refine
    res = S.run(image, quality=60, effort=1)
    assert F.refine is own  # the fit's own refinement is back
    assert set(res) == {name for name, *_ in S.VARIANTS}
    # a sweep never raises the objective and the context refit never raises the bits
    for name in res:
        assert res[name]["j"] <= res["none"]["j"] * (1 + 1e-6)
    assert res["l7x2"]["j"] <= res["l7"]["j"] * (1 + 1e-6)
