"""benchmarks/context_bound.py: the bits richer context models would spend on a file's latents."""
from benchmarks import context_bound as B
from make_golden import GOLDEN_LARGE_ANI


def test_known_offsets_follow_the_coding_order():
    large = B.known_offsets(5, large=True)
    # the multiples of 4 come first: nothing of their level is known
    assert large[0] == []
    # the positions 2 mod 4 see the multiples of 4 on their diagonals at distance 2
    assert sorted(large[1]) == [(-2, -2), (-2, 2), (2, -2), (2, 2)]
    # the rest of the even lattice: the direct neighbours at distance 2
    assert {(-2, 0), (2, 0), (0, -2), (0, 2)} <= set(large[2])
    # i and j odd: every even position around, the diagonal neighbours first
    assert {(-1, -1), (-1, 1), (1, -1), (1, 1)} <= set(large[3]) and (0, 1) not in large[3]
    # the last pass sees every position with i + j even, i.e. offsets with di + dj odd
    assert set(large[4]) == {(di, dj) for di in range(-3, 4) for dj in range(-3, 4) if (di + dj) % 2}
    small = B.known_offsets(5, large=False)
    assert small[1] == small[2] == [] and small[3] == large[3] and small[4] == large[4]


def test_bound_on_a_real_file():
    r = B.bound(GOLDEN_LARGE_ANI.read_bytes(), steps=60)
    assert r["file"] > 0
    # the file's own model refitted in float codes its latents in about the same bits
    assert abs(r["lin5"] / r["file"] - 1) < 0.25
    for name in ("lin_rich", "mlp_rich"):
        assert 0 < r[name] < 2 * r["file"]
