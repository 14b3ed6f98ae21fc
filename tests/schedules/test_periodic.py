"""The extension of searched orders to many microbatches (schedules.periodic) against the direct builds it
replaces: every action (kind, stage, microbatch) in the same place of every rank's program."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schedules.periodic as periodic
import schedules.v_memory as v_memory
import schedules.zb_auto as zb_auto
from schedules import validate
from schedules.ir import NUM_OPS
from schedules.periodic import exact_times, extend, fit, plausible, runs
from schedules.v_memory import v_memory_limit, v_memory_schedule
from schedules.zb_auto import AutoTimes, auto_zero_bubble
from schedules.zero_bubble import zb_h1, zb_h2

DYADIC = [
    AutoTimes(),  # the registry's F = I = W, free transfers, no weight stash
    AutoTimes(1.0, 1.0, 0.5, 0.25, 0.25),
    AutoTimes(2.0, 1.5, 1.0, 0.125, 0.0),
    AutoTimes(1.0, 2.0, 0.75, 0.0, 0.5),
]


def smallest_extended(p: int) -> int:
    """The first m at which the extension is tried: m >= 64 p (FAST_FROM) and the three builds at
    m0 = 2p + 2 .. m0 + 2 within the budget, 3 m0 + 3 <= m / 8."""
    return max(64 * p, 8 * (6 * p + 9))


class Spy:
    """Counts the calls of ``extend`` that returned a model (the fast path was taken)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object) -> None:
        self.taken = 0
        self.calls = 0

        def spy(*args: object, **kwargs: object) -> object:
            out = extend(*args, **kwargs)  # type: ignore[arg-type]
            self.calls += 1
            self.taken += out is not None
            return out

        monkeypatch.setattr(module, "extend", spy)


@pytest.mark.parametrize(
    ("p", "extra", "times_index", "objective"),
    [
        (1, 0, 0, "sync"),
        (2, 0, 0, "sync"),
        (2, 1, 1, "post-validation"),
        (3, 7, 0, "sync"),
        (3, 0, 2, "sync"),
        (4, 0, 0, "sync"),
        (4, 1, 0, "sync"),
        (4, 5, 3, "post-validation"),
        (4, 131, 1, "sync"),
        (5, 3, 0, "sync"),
        (6, 2, 2, "sync"),
    ],
)
@pytest.mark.parametrize("limit_per_rank", [1, 2])
def test_extended_zero_bubble_is_the_direct_build(
    monkeypatch: pytest.MonkeyPatch, p: int, extra: int, times_index: int, objective: str, limit_per_rank: int
) -> None:
    # zb-1p (limit p) and zb-2p (limit 2p) near the size from which the extension is tried, and above it.
    m = smallest_extended(p) + extra
    t = DYADIC[times_index]
    spy = Spy(monkeypatch, zb_auto)
    fast = auto_zero_bubble(p, m, limit_per_rank * p, t, objective, "zb-1p")
    assert spy.calls == 1
    slow = auto_zero_bubble(p, m, limit_per_rank * p, t, objective, "zb-1p", fast=False)
    assert fast == slow
    assert [fast.text(r) for r in range(p)] == [slow.text(r) for r in range(p)]
    if times_index == 0:  # the registry's times always take the fast path at these sizes
        assert spy.taken == 1


@pytest.mark.parametrize(("times_index", "taken"), [(1, True), (2, False), (3, True)])
def test_other_exact_times_settle_later_and_extend_exactly(
    monkeypatch: pytest.MonkeyPatch, times_index: int, taken: bool
) -> None:
    # Unequal passes, transfers and a weight stash take longer to settle than the registry's equal times: the
    # extension is found from larger builds (m0 doubled), here at p 3 and 1,500 microbatches. With F 2, I 1.5,
    # W 1 and transfers 0.125 some candidates do not repeat every microbatch: built directly.
    spy = Spy(monkeypatch, zb_auto)
    t = DYADIC[times_index]
    fast = auto_zero_bubble(3, 1500, 6, t)
    assert spy.taken == taken
    assert fast == auto_zero_bubble(3, 1500, 6, t, fast=False)


@pytest.mark.parametrize(
    ("name", "p", "m", "times_index", "taken"),
    [
        ("zb-v-min", 3, 600, 0, True),
        ("zb-v-min", 3, 601, 0, True),
        ("zb-v-min", 4, 600, 0, True),
        ("zb-v-min", 4, 603, 0, True),
        ("zb-v-half", 3, 600, 0, True),
        ("zb-v-half", 3, 602, 0, True),
        ("zb-v-min", 2, 300, 0, False),  # p 2 does not settle within the budget: built directly
        ("zb-v-half", 4, 300, 1, False),
    ],
)
def test_extended_v_memory_order_is_the_direct_build(
    monkeypatch: pytest.MonkeyPatch, name: str, p: int, m: int, times_index: int, taken: bool
) -> None:
    spy = Spy(monkeypatch, v_memory)
    fast = v_memory_schedule(name, p, m, DYADIC[times_index])
    assert (spy.calls, spy.taken) == (1, taken)
    assert fast == v_memory_schedule(name, p, m, DYADIC[times_index], fast=False)
    validate(fast)


def test_registry_v_memory_orders_take_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch, v_memory)
    for name in ("zb-v-min", "zb-v-half"):
        v_memory_schedule(name, 4, 4000)
    assert spy.taken == 2


def test_inexact_times_build_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.1 is not a multiple of a power of two: sums of it depend on their order, so no extension is tried.
    spy = Spy(monkeypatch, zb_auto)
    t = AutoTimes(1.0, 1.0, 0.1)
    m = smallest_extended(2)
    assert auto_zero_bubble(2, m, 2, t) == auto_zero_bubble(2, m, 2, t, fast=False)
    assert spy.calls == 0
    assert not exact_times([0.1], 1.0)
    assert exact_times([0.25, 3.0], 1e6)
    assert not exact_times([0.25], 2.0**25)


@pytest.mark.parametrize("builder", [zb_h1, zb_h2])
def test_a_model_of_a_handcrafted_schedule_extends_it_exactly(builder: object) -> None:
    # ZB-H1 / ZB-H2 are packed generators with a closed form: the model fitted at m0 .. m0 + 2 must give the
    # generator's own programs at a much larger m.
    p, m0, unit = 5, 12, 5 * NUM_OPS
    samples = [(builder(p, m0 + k).programs, (float(m0 + k),)) for k in range(3)]  # type: ignore[operator]
    model = fit(samples, m0, 1, unit, 3)
    assert model is not None
    assert model.fits(1000)
    assert model.programs_at(1000) == builder(p, 1000).programs  # type: ignore[operator]
    assert model.values_at(1000) == (1000.0,)


def test_fit_refuses_what_is_not_affine() -> None:
    unit = 2 * NUM_OPS
    s = [zb_h1(2, m) for m in (10, 11, 12)]
    assert fit([(x.programs, (1.0,)) for x in s], 10, 1, unit, 3) is not None
    assert (
        fit([(x.programs, v) for x, v in zip(s, [(1.0,), (2.0,), (4.0,)], strict=True)], 10, 1, unit, 3)
        is None
    )
    mixed = [s[0].programs, zb_h2(2, 11).programs, s[2].programs]
    assert fit([(x, ()) for x in mixed], 10, 1, unit, 3) is None


def test_runs_split_a_program_into_repeated_blocks() -> None:
    unit = NUM_OPS  # one stage
    # F0 F1 F2 | (I0 F3) (I1 F4) | W0 W1 W2 W3 W4 : codes mb * 4 + op
    prog = [0, 4, 8, 2, 12, 6, 16, 3, 7, 11, 15, 19]
    assert runs(prog, unit, 4) == [((0,), (4,), 3), ((2, 12), (4, 4), 2), ((3,), (4,), 5)]
    # a step back, or to another stage or kind (not a whole number of microbatches), is no repetition
    assert runs([8, 0, 5], unit, 4) == [((8,), (0,), 1), ((0,), (0,), 1), ((5,), (0,), 1)]


@pytest.mark.parametrize("name", ["zb-v-min", "zb-v-half"])
def test_v_limits_are_the_papers(name: str) -> None:
    # the extension keeps the paper's cap: the built order's peak never exceeds it
    from schedules.timing import time_order

    s = v_memory_schedule(name, 4, 4000)
    peak = max(time_order(s, AutoTimes().stage_times(8)).peak_memory) / 2
    assert peak <= v_memory_limit(name, 4)


def _spy_on_v_extend(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int] | None]:
    """Lift the sampling budget (samples up to m in all) and record the (period, m0) of every extension the V
    list scheduler takes (None: it fell back)."""
    monkeypatch.setattr(periodic, "BUDGET", 1)
    seen: list[tuple[int, int] | None] = []

    def spy(*args: object, **kwargs: object) -> object:
        out = extend(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(None if out is None else (out[0].period, out[0].m0))
        return out

    monkeypatch.setattr(v_memory, "extend", spy)
    return seen


def test_a_long_v_period_extends_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    # zb-v-min at p 8 repeats every 5 microbatches from about m 145 on. The budget is lifted (samples up to m in
    # all instead of m / 8) so that the direct build it is compared with stays affordable here.
    seen = _spy_on_v_extend(monkeypatch)
    fast = v_memory_schedule("zb-v-min", 8, 1500)
    assert seen == [(5, 145)]
    assert fast == v_memory_schedule("zb-v-min", 8, 1500, fast=False)


def test_plausible_checks_counts_and_microbatch_range() -> None:
    s = zb_h1(3, 20)
    unit = 3 * NUM_OPS
    assert plausible(s.programs, 20, unit, 60)
    assert not plausible(s.programs, 19, unit, 60)  # a code of microbatch 19 is out of range for m 19
    assert not plausible([p[:-1] for p in s.programs], 20, unit, 60)


EXACT = st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0])


@settings(max_examples=24, deadline=None)
@given(
    p=st.integers(1, 4),
    extra=st.integers(0, 40),
    tf=EXACT,
    ti=EXACT,
    tw=st.sampled_from([0.0, 0.5, 1.0]),
    p2p=st.sampled_from([0.0, 0.125, 0.25]),
    stash=st.sampled_from([0.0, 0.25, 0.5]),
    limit_per_rank=st.sampled_from([1, 2]),
    objective=st.sampled_from(["sync", "post-validation"]),
)
def test_any_exact_times_give_the_direct_build(
    p: int,
    extra: int,
    tf: float,
    ti: float,
    tw: float,
    p2p: float,
    stash: float,
    limit_per_rank: int,
    objective: str,
) -> None:
    # Whatever the timing ratios, the fast path (taken or not) builds exactly what the direct build does.
    t = AutoTimes(tf, ti, tw, p2p, stash)
    m = smallest_extended(p) + extra
    fast = auto_zero_bubble(p, m, limit_per_rank * p, t, objective)
    assert fast == auto_zero_bubble(p, m, limit_per_rank * p, t, objective, fast=False)


def test_the_memo_repeats_the_first_call_without_building() -> None:
    # extend with a memo returns, without a single build, the models its first call fitted, and takes the same
    # steps: a size whose budget (m / 8) cannot pay for the builds still gets None, as without the memo.
    p = 3
    built: list[int] = []

    def sample(size: int) -> list[tuple[tuple[object, ...], tuple[float, ...]]]:
        built.append(size)
        return [(zb_h1(p, size).programs, (float(size),))]

    memo = periodic.Memo()
    unit = p * NUM_OPS
    first = extend(sample, 400, 8, unit, 3, periods=(1,), memo=memo)
    assert first is not None and built == [8, 9, 10]
    assert extend(sample, 400, 8, unit, 3, periods=(1,), memo=memo) == first
    again = extend(sample, 4000, 8, unit, 3, periods=(1,), memo=memo)
    assert again == first and built == [8, 9, 10]
    assert again[0].programs_at(4000) == zb_h1(p, 4000).programs
    assert extend(sample, 200, 8, unit, 3, periods=(1,), memo=memo) is None  # 27 > 200 // 8
    assert extend(sample, 200, 8, unit, 3, periods=(1,)) is None


def test_memos_are_kept_per_key_for_the_most_recent_keys() -> None:
    a = periodic.memo_for(("test", 1))
    assert periodic.memo_for(("test", 1)) is a
    for i in range(periodic.MEMO_KEYS):
        periodic.memo_for(("test", 2, i))
    assert periodic.memo_for(("test", 1)) is not a  # dropped as the least recently used


def test_a_second_build_reuses_the_fit_and_is_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    p, m = 4, smallest_extended(4) + 3
    t = DYADIC[1]
    first = auto_zero_bubble(p, m, p, t)
    calls: list[int] = []
    pool = zb_auto._pool
    monkeypatch.setattr(zb_auto, "_pool", lambda *a, **k: calls.append(a[1]) or pool(*a, **k))
    assert auto_zero_bubble(p, m + 10, p, t) == auto_zero_bubble(p, m + 10, p, t, fast=False)
    assert calls == [m + 10]  # only the direct reference build ran
    assert first == auto_zero_bubble(p, m, p, t, fast=False)


# Timing ratios at pp 16 and 64 (limit in microbatches per rank) and whether the extension is taken at the
# sizes below; where it is not (the structure has not settled within the budget), the direct build runs.
LARGE_PP_CASES = [
    (1, AutoTimes(), True),
    (2, AutoTimes(), True),
    (1, AutoTimes(1.0, 1.0, 0.5), True),
    (2, AutoTimes(1.0, 2.0, 1.0), True),
    (1, AutoTimes(2.0, 2.0, 1.0, 0.0, 0.5), True),
    (1, AutoTimes(1.0, 1.0, 1.0, 0.25), False),
]


@pytest.mark.parametrize(("extra", "case"), [(0, 0), (1, 1), (2, 2), (0, 3), (1, 4), (0, 5)])
def test_extension_at_pp_16_is_the_direct_build(
    monkeypatch: pytest.MonkeyPatch, extra: int, case: int
) -> None:
    # zb-1p / zb-2p at pp 16 at and just above the size from which the extension is tried (m 1,024).
    p, m = 16, smallest_extended(16) + extra
    limit_per_rank, t, taken = LARGE_PP_CASES[case]
    spy = Spy(monkeypatch, zb_auto)
    fast = auto_zero_bubble(p, m, limit_per_rank * p, t)
    assert (spy.calls, spy.taken) == (1, taken)
    assert fast == auto_zero_bubble(p, m, limit_per_rank * p, t, fast=False)


@pytest.mark.parametrize("case", range(len(LARGE_PP_CASES)))
def test_extension_at_pp_64_is_the_direct_build(monkeypatch: pytest.MonkeyPatch, case: int) -> None:
    # pp 64 from builds at m 130 .. 132 (2p + 2): the thresholds are lowered (extension from 4 microbatches
    # per rank, sampled sizes up to the whole m) so that the direct build compared with stays affordable.
    monkeypatch.setattr(zb_auto, "FAST_FROM", 4)
    monkeypatch.setattr(periodic, "BUDGET", 1)
    p, m = 64, 400
    limit_per_rank, t, taken = LARGE_PP_CASES[case]
    spy = Spy(monkeypatch, zb_auto)
    fast = auto_zero_bubble(p, m, limit_per_rank * p, t)
    assert (spy.calls, spy.taken) == (1, taken)
    assert fast == auto_zero_bubble(p, m, limit_per_rank * p, t, fast=False)


@pytest.mark.parametrize("m", [1024, 1027])
def test_v_min_at_pp_16_extends_exactly(monkeypatch: pytest.MonkeyPatch, m: int) -> None:
    # zb-v-min at pp 16 repeats every 4 microbatches from m 35 on; the budget is lifted (samples up to m in all)
    # so that the direct build compared with stays affordable.
    seen = _spy_on_v_extend(monkeypatch)
    fast = v_memory_schedule("zb-v-min", 16, m)
    assert seen == [(4, 36 - (1024 - m) % 4)]
    assert fast == v_memory_schedule("zb-v-min", 16, m, fast=False)


@pytest.mark.parametrize(
    ("shorter_unit", "per_rank", "ok"), [(0, 3000, True), (0, 2999, False), (1, 3000, False)]
)
def test_a_model_checks_its_programs_without_writing_them(shorter_unit: int, per_rank: int, ok: bool) -> None:
    # Model.plausible_at reads the count and the code range off the runs: the same answer as plausible on the
    # programs it writes (failing on a count one short, and on codes past m microbatches of a smaller unit).
    p, m0, unit = 4, 12, 4 * NUM_OPS
    model = fit([(zb_h2(p, m0 + k).programs, ()) for k in range(3)], m0, 1, unit, 3)
    assert model is not None
    written = model.programs_at(1000)
    assert written == zb_h2(p, 1000).programs
    assert model.plausible_at(1000, unit - shorter_unit, per_rank) is ok
    assert plausible(written, 1000, unit - shorter_unit, per_rank) is ok


def test_woven_appends_to_an_array() -> None:
    from array import array

    prog = array("q", [5])
    assert periodic.woven(3, [(0, 10), (1, 10), (5, 2)], prog) == []
    assert prog.tolist() == [5, 0, 1, 5, 10, 11, 7, 20, 21, 9]
