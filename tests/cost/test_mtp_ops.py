"""The multi-token-prediction module's 2h -> h projection is timed and counted (DeepSeek-V3 report,
arXiv:2412.19437, Section 2.2: h'_k = M_k [RMSNorm(h); RMSNorm(Emb(t))], M_k in R^(h x 2h))."""

from __future__ import annotations

import pytest

from pipesim.comm.base import LevelCommModel
from pipesim.cost.end_ops import mtp_ops
from pipesim.cost.stages import StageCostModel
from pipesim.cost.times import mtp_pass_times
from pipesim.cost.traffic import stage_traffic
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model
from pipesim.specs.placement import RankGrid

DS = get_model("deepseek-v3")  # h 7168, one MTP module
LAY = Layout(tp=2, pp=2, ep=8, dp=8, micro_batch_size=1, global_batch_size=16, seq_length=4096)


def test_projection_gemm_and_collectives_by_hand() -> None:
    ops = mtp_ops(DS, LAY)
    by = {o.name: o for o in ops.forward + ops.backward}
    h, tokens, t = 7168, 4096, 2
    # Column-parallel M_k: (M, N, K) = (b s, h / t, 2h): 2 x 4096 x 3584 x 14336 = 420.9 GFLOP per pass and TP
    # rank; its input and weight gradients the same each.
    assert by["mtp.eh_proj"].shape == (tokens, h // t, 2 * h)
    assert by["mtp.eh_proj"].flops == 2 * tokens * (h // t) * (2 * h) == pytest.approx(420.907e9, rel=1e-5)
    assert by["mtp.eh_proj.dx"].flops == by["mtp.eh_proj.dw"].flops == by["mtp.eh_proj"].flops
    # Summed over the TP ranks the forward is the 2 x 2h x h FLOPs per token model FLOPs count for M_k.
    assert t * by["mtp.eh_proj"].flops / tokens == 2 * 2 * h * h
    # Output gathered over TP (b s h x 2 bytes), its backward a reduce-scatter; the input gradient all-reduced.
    assert by["mtp.gather"].collective == "all-gather" and by["mtp.gather"].comm_bytes == 2 * tokens * h
    assert by["mtp.gather.bwd"].collective == "reduce-scatter"
    assert (
        by["mtp.eh_proj.bwd"].collective == "all-reduce"
        and by["mtp.eh_proj.bwd"].comm_bytes == 4 * tokens * h
    )
    assert not any(o.kind == "comm" for o in mtp_ops(DS, Layout(ep=8, dp=8, global_batch_size=8)).forward)


def test_last_stage_times_and_moves_the_projection() -> None:
    comm = LevelCommModel()
    gpu = get_gpu("h100-sxm")
    model = StageCostModel(DS, gpu, comm)
    grid = RankGrid(LAY.tp, LAY.dp, LAY.pp, ("tp", "dp", "pp"), LAY.cp, LAY.ep, LAY.etp)
    sc = model.stage_costs(LAY, [0, 1], grid)
    tp = grid.tp_group(0, 1)
    glue = mtp_pass_times(DS, LAY, gpu, model.efficiency, comm, tp)
    assert glue.forward_s > 0 and glue.backward_s > glue.forward_s and glue.weight_s > 0
    groups = {"cp": grid.cp_group(0, 0, 1), "ep": grid.ep_group(1), "etp": grid.etp_group(1)}
    per_kind, _, head = model.units(LAY, tp, groups)
    kinds = DS.kind_counts(31, 61)
    layers = sum(per_kind[k].forward_s * n for k, n in kinds.items())
    want = layers + head.forward_s + per_kind[DS.main_kind()].forward_s + head.forward_s + glue.forward_s
    assert sc.passes[1].forward_s == pytest.approx(want, rel=1e-12)
    # The TP bytes of the last stage's forward include the gather of the projection's output.
    with_glue = stage_traffic(DS, LAY, [0, 1]).tp_forward_bytes[1]
    ops = mtp_ops(DS, LAY)
    assert with_glue >= sum(o.comm_bytes for o in ops.forward if o.kind == "comm") > 0
