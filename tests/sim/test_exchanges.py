"""The expert all-to-alls and context-parallel exchanges as Gantt series: one bar per pass on the
communication lane, as long as the stage's exchange time, carrying the bytes the layer op model gives; and the
bytes of a model with dense and MoE layers (DeepSeek-V3), which used to be refused."""

from __future__ import annotations

import numpy as np
import pytest

from pipesim.cost.traffic import stage_traffic
from pipesim.figures.gantt import summary_table
from pipesim.sim.engine import SpanKind
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.sim.series import Lane, report_series
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model

MIB = 2**20


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    # Both kinds at once: mixtral-8x7b with ep 2 and cp 2 (ep is taken from the dp x cp ranks).
    lay = Layout(tp=2, cp=2, ep=2, pp=2, global_batch_size=4, seq_length=8192)
    return simulate_scenario(Scenario(get_model("mixtral-8x7b"), get_gpu("h100-sxm"), lay))


def test_ep_and_cp_bars_sit_in_their_passes_on_the_exchange_lane(report) -> None:  # type: ignore[no-untyped-def]
    series = report_series(report)
    ep, cp = series.group("EP"), series.group("CP")
    assert ep is not None and cp is not None
    assert ep.lane == cp.lane == Lane.EXCHANGE
    m = report.scenario.layout.num_microbatches
    tl = series.timeline
    for g, fwd, bwd in (
        (ep, [p.ep_forward_s for p in report.stage_passes], [p.ep_comm_s - p.ep_forward_s for p in report.stage_passes]),
        (cp, [p.cp_forward_full_s for p in report.stage_passes], [p.cp_comm_full_s - p.cp_forward_full_s for p in report.stage_passes]),
    ):  # fmt: skip
        assert g.size == 2 * 2 * m  # 2 ranks, one bar per F and per B of each microbatch
        assert g.bytes is not None and g.exposed_s is not None and np.all(g.bytes > 0)
        for i in range(g.size):
            # The host pass: the compute span of this rank, stage and microbatch that contains the bar.
            host = np.nonzero(
                (tl.rank[: tl.num_actions] == g.rank[i])
                & (tl.stage[: tl.num_actions] == g.stage[i])
                & (tl.microbatch[: tl.num_actions] == g.microbatch[i])
                & (tl.start_s[: tl.num_actions] <= g.start_s[i])
                & (tl.end_s[: tl.num_actions] >= g.end_s[i])
            )[0]
            assert host.size == 1
            kind = SpanKind(int(tl.kind[host[0]]))
            want = (fwd if kind == SpanKind.F else bwd)[int(g.stage[i])]
            assert g.duration_s[i] == pytest.approx(want, rel=1e-9)
    # EP ends with its pass, CP right before it: they never overlap on the shared lane.
    assert np.allclose(cp.end_s, ep.start_s)
    # Bytes per F pass of stage 0: 16 layers. EP: tokens b s / (cp tp) = 2048 routed to 2 experts, 2 bytes x
    # h = 4096 per copy, dispatch + combine (Megatron-Core's all-to-all dispatcher). CP ring (Liu et al. 2023):
    # one round of a key/value block, s / cp = 4096 tokens x 8 / tp = 4 KV heads x (128 + 128) x 2 bytes.
    f = (tl.kind[: tl.num_actions] == SpanKind.F).sum()
    assert f == 2 * m
    first_ep = ep.bytes[(ep.rank == 0)][0]
    assert first_ep == 16 * 2 * (2048 * 2 * 4096 * 2) == 16 * 2 * 32 * MIB
    assert cp.bytes[(cp.rank == 0)][0] == 16 * 4096 * 4 * 256 * 2 == 16 * 8 * MIB
    # The page's summary table sums the bars (over all ranks, like its other communication columns).
    table = summary_table([series])
    row = dict(zip(table.columns, table.rows[0], strict=True))
    assert (
        row["EP ms"] == f"{ep.duration_s.sum() * 1e3:.3f}"
        and row["CP ms"] == f"{cp.duration_s.sum() * 1e3:.3f}"
    )


def test_synthetic_series_have_no_exchange_bars() -> None:
    from pipesim.sim.compare import CompareRequest
    from pipesim.sim.series import simulate_series

    (series,) = simulate_series(CompareRequest(schedules=("1f1b",), pp=4, microbatches=8))
    assert series.group("EP") is None and series.group("CP") is None and series.exchanges is None
    assert summary_table([series]).columns[-1] == "recompute ms"


def test_traffic_of_a_model_with_dense_and_moe_layers() -> None:
    # DeepSeek-V3: 61 layers, the first 3 dense, plus one MTP module (a MoE layer) on the last stage; top-8
    # routing, h = 7168. tp 2, s = 4096: each GPU routes 2048 tokens, 8 copies each, 2 bytes x h per copy.
    model = get_model("deepseek-v3")
    lay = Layout(tp=2, ep=8, pp=1, dp=8, global_batch_size=8, seq_length=4096)
    t = stage_traffic(model, lay, (0,))
    a2a = 2048 * 8 * 7168 * 2
    moe_layers = model.num_layers - model.first_k_dense_layers + model.mtp_layers
    assert (model.num_layers, model.first_k_dense_layers, model.mtp_layers) == (61, 3, 1)
    assert t.ep_forward_bytes == (moe_layers * 2 * a2a,)
    assert t.ep_backward_bytes == (moe_layers * 2 * a2a,)
    assert t.cp_forward_bytes == (0.0,)
