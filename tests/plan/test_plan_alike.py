"""``plan`` shows layouts identical in effect once (issue 16 part 7): at pp = 1 with one microbatch gpipe,
1F1B and the zero-bubble orders run the same passes on one rank, so they are one row naming them all; where
the schedules do differ (GPipe holds every microbatch's activations, 1F1B one) they stay apart."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import invoke

import pipesim
from pipesim.plan.evaluate import scenario_of
from pipesim.plan.search import PlanCluster, PlanRequest, SearchSpace, plan
from pipesim.sim.scenario import simulate_scenario
from pipesim.specs.gpu import get_gpu
from pipesim.specs.model import get_model

SCHEDULES = ("gpipe", "1f1b", "zb-h1", "zb-h2")


def _request(mbs: tuple[int, ...], top_k: int) -> PlanRequest:
    space = SearchSpace(pp=(1,), tp=(1,), micro_batch_sizes=mbs, schedules=SCHEDULES, recompute=("none",),
                        distributed_optimizer=(True,), sequence_parallel=(False,))  # fmt: skip
    cluster = PlanCluster(gpu=get_gpu("a100-80gb"), nodes=1, gpus_per_node=8)
    return PlanRequest(get_model("gpt-1.7b"), cluster, global_batch_size=64, space=space, top_k=top_k)


def test_one_microbatch_at_pp1_is_one_row_whose_schedules_simulate_alike() -> None:
    # 64 sequences over dp 8 at micro-batch 8: m = 1 microbatch, one rank: every order is F then B.
    result = plan(_request((8,), top_k=4))
    (row,) = result.entries
    assert (row.candidate.schedule, *row.alike) == SCHEDULES and row.simulated is not None
    assert result.feasible == 4 and result.simulated == 4  # each simulated, then found alike
    # The claim checked independently: every schedule's own simulation gives the row's numbers.
    for name in SCHEDULES:
        rep = simulate_scenario(scenario_of(result.request, replace(row.candidate, schedule=name)))
        assert rep.step_time_s == pytest.approx(row.step_time_s, rel=1e-9)
        assert rep.worst_memory.peak == pytest.approx(row.peak_memory_bytes, rel=1e-9)


def test_schedules_that_differ_in_memory_stay_apart() -> None:
    # Micro-batch 1: m = 8 microbatches on one rank; GPipe keeps all 8 in flight, 1F1B one (more memory).
    result = plan(_request((1,), top_k=4))
    by_schedule = {e.candidate.schedule: e for e in result.entries}
    assert "gpipe" in by_schedule and "1f1b" in by_schedule
    assert by_schedule["gpipe"].peak_memory_bytes > by_schedule["1f1b"].peak_memory_bytes
    assert "gpipe" not in by_schedule["1f1b"].alike and "1f1b" not in by_schedule["gpipe"].alike


def test_no_two_rows_differ_only_by_schedule_with_the_same_results() -> None:
    result = pipesim.plan("gpt-1.7b", "a100-80gb", nodes=1, global_batch_size=64, top_k=8)
    seen = set()
    for e in result.entries[:50]:
        c = e.candidate
        key = (c.tp, c.pp, c.dp, c.vpp, c.micro_batch_size, c.recompute, c.distributed_optimizer,
               c.sequence_parallel, e.simulated is not None, round(e.step_time_s, 12),
               round(e.peak_memory_bytes))  # fmt: skip
        assert key not in seen, c.label()
        seen.add(key)


def test_cli_marks_and_lists_the_collapsed_schedules() -> None:
    args = ("plan", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--nodes", "1", "--global-batch-size", "64",
            "--pp", "1", "--tp", "1", "--micro-batch-size", "8", "--schedules", ",".join(SCHEDULES),
            "--recompute", "none", "--distributed-optimizer", "on", "--workers", "1", "--top-k", "4")  # fmt: skip
    code, out, err = invoke(*args)
    assert code == 0, err
    assert "gpipe +3" in out and "#1 gpipe = 1f1b = zb-h1 = zb-h2" in out
    code, out, err = invoke(*args, "--json")
    (row,) = json.loads(out)["results"]
    assert row["schedule"] == "gpipe" and row["same_effect_schedules"] == ["1f1b", "zb-h1", "zb-h2"]
    code, out, err = invoke(*args, "--csv")
    assert code == 0 and "1f1b zb-h1 zb-h2" in out
