"""How many layers of each kind a range of layers holds, by arithmetic: the cost does not grow with the layer
count (a model of 10^8 layers is counted as fast as one of 32).

A layer's kind (:meth:`pipesim.specs.shape.ModelSpec.layer_kind`) is fixed by two congruences: layer i is MoE
when the model has experts, i >= ``first_k_dense_layers`` = k and i = k - 1 (mod ``moe_layer_freq``); it is a
global-attention layer when the model has no sliding window, or when ``sliding_window_pattern`` = p > 0 and
i = p - 1 (mod p) (every other layer slides). Counting the i of a range in one residue class, and in two at once
(the Chinese remainder theorem for moduli that need not be coprime), gives all four kinds' counts.
"""

from __future__ import annotations

from math import gcd

__all__ = ["LayerPattern", "in_class", "in_both"]


def in_class(start: int, stop: int, mod: int, res: int) -> int:
    """How many i in ``start`` .. ``stop - 1`` have i = ``res`` (mod ``mod``)."""

    def below(n: int) -> int:  # such i in 0 .. n - 1
        return (n - res % mod + mod - 1) // mod if n > res % mod else 0

    return max(0, below(stop) - below(start)) if stop > start else 0


def _crt(m1: int, r1: int, m2: int, r2: int) -> tuple[int, int] | None:
    """(modulus, residue) of the i with i = r1 (mod m1) and i = r2 (mod m2), or None when there is none."""
    g = gcd(m1, m2)
    if (r2 - r1) % g:
        return None
    lcm = m1 // g * m2
    if m1 // g == 1:
        return lcm, r2 % lcm
    t = ((r2 - r1) // g * pow(m1 // g, -1, m2 // g)) % (m2 // g)
    return lcm, (r1 + m1 * t) % lcm


def in_both(start: int, stop: int, a: tuple[int, int], b: tuple[int, int]) -> int:
    """How many i in ``start`` .. ``stop - 1`` lie in residue class ``a`` = (mod, res) and in ``b``."""
    both = _crt(a[0], a[1], b[0], b[1])
    return in_class(start, stop, *both) if both else 0


class LayerPattern:
    """The kind pattern of a model's layers: ``moe`` (whether it has experts), ``first_dense`` = k,
    ``moe_freq`` (the MoE period after the dense layers), ``sliding`` (whether it has a window) and
    ``pattern`` (every pattern-th layer global; 0 = all slide)."""

    def __init__(self, moe: bool, first_dense: int, moe_freq: int, sliding: bool, pattern: int) -> None:
        self.moe, self.first_dense, self.moe_freq = moe, first_dense, max(1, moe_freq)
        self.sliding, self.pattern = sliding, pattern

    def counts(self, start: int, stop: int) -> dict[tuple[bool, bool], int]:
        """Layers ``start`` .. ``stop - 1`` of each (moe, sliding) kind (kinds with none left out)."""
        total = max(0, stop - start)
        moe_class = (self.moe_freq, self.first_dense - 1)
        moe_from = max(start, self.first_dense)
        moe = in_class(moe_from, stop, *moe_class) if self.moe else 0
        if not self.sliding:  # every layer global
            glob, moe_glob = total, moe
        elif not self.pattern:  # every layer slides
            glob = moe_glob = 0
        else:
            glob_class = (self.pattern, self.pattern - 1)
            glob = in_class(start, stop, *glob_class)
            moe_glob = in_both(moe_from, stop, moe_class, glob_class) if self.moe else 0
        out = {
            (True, False): moe_glob,
            (True, True): moe - moe_glob,
            (False, False): glob - moe_glob,
            (False, True): total - moe - glob + moe_glob,
        }
        return {k: n for k, n in out.items() if n}

    def first(self, kind: tuple[bool, bool], start: int, stop: int) -> int:
        """The first layer of ``kind`` in ``start`` .. ``stop - 1`` (there must be one): a binary search on
        the counts, so the order of first appearance costs log(layers) counts."""
        lo, hi = start, stop - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.counts(start, mid + 1).get(kind, 0):
                hi = mid
            else:
                lo = mid + 1
        return lo
