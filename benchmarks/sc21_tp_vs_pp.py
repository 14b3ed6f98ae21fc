"""SC21 Figure 13's claim (tensor versus pipeline parallelism) against pipesim: validation, not fitted.

Source: Narayanan et al., 'Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM',
SC21 (arXiv:2104.04473), Sections 1 and 5.4.1 / Figure 13 (published.md s1.5, ``tp_vs_pp``): a 161-162B GPT
(32 layers, 128 heads, h = 20480) on 64 A100 (8 DGX A100) peaks at TP = 8, the GPUs of one server, and
sub-optimal (TP, PP) combinations are "up to 2x" slower. The figure's bar heights are not in published.md,
so only those two claims are checked. Settings as Section 5 ran them (Megatron-LM 2021): fp16, unfused
attention, full recomputation, no sequence parallelism, no distributed optimizer, no TP or pipeline
communication overlap; the default (1F1B) schedule; global batches 32, 128 and 512 (the figure's); the
planner picks each layout's micro-batch (1-8). The cluster is the A100's shipped default (two-level DGX A100,
:mod:`pipesim.specs.server`). ``python benchmarks/sc21_tp_vs_pp.py`` prints hardware TFLOP/s per GPU for each
(TP, PP) and batch, and the two claims' figures; tests/plan/test_sc21_tp_vs_pp.py asserts them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import print_table  # noqa: E402

from pipesim.plan.search import PlanCluster, PlanRequest, SearchSpace, plan  # noqa: E402
from pipesim.specs.gpu import get_gpu  # noqa: E402
from pipesim.specs.shape import ModelSpec  # noqa: E402

# SC21 Section 5.4.1: "a GPT model with 162.2 billion parameters" -- 32 layers, 128 heads, h = 20480
# (published.md s1.5); V = 51,200 and s = 2048 as in every SC21 GPT model (Table 1).
MODEL = ModelSpec(
    name="gpt-162b",
    num_layers=32,
    hidden_size=20480,
    num_attention_heads=128,
    vocab_size=51200,
    seq_length=2048,
    ffn_hidden_size=4 * 20480,
    num_kv_heads=128,
    source="Narayanan et al., SC21 (arXiv:2104.04473), Section 5.4.1 / Figure 13",
)
LAYOUTS = ((2, 32), (4, 16), (8, 8), (16, 4), (32, 2))  # (TP, PP) on 64 GPUs, Figure 13's x axis
BATCHES = (32, 128, 512)
NODES = 8


def tflops_grid(schedules: tuple[str, ...] = ("1f1b",)) -> dict[tuple[int, int, int], float]:
    """Hardware TFLOP/s per GPU (recompute counted, as SC21 eq. 3 counts it) of the planner's best
    configuration for each (global batch, TP, PP) of Figure 13, with SC21's settings (module docstring)."""
    gpu = get_gpu("a100-80gb")
    grid: dict[tuple[int, int, int], float] = {}
    for gbs in BATCHES:
        for tp, pp in LAYOUTS:
            space = SearchSpace(
                tp=(tp,),
                pp=(pp,),
                schedules=schedules,
                recompute=("full",),
                distributed_optimizer=(False,),
                sequence_parallel=(False,),
                micro_batch_sizes=(1, 2, 4, 8),
                allow_cross_node_tp=True,  # TP 16 and 32 span two and four servers in the figure
            )
            req = PlanRequest(
                MODEL,
                PlanCluster.on_server(gpu, NODES),
                gbs,
                space=space,
                precision="fp16",
                attention="unfused",
                dp_overlap=False,
                tp_comm_overlap=False,
                overlap_p2p_comm=False,
                top_k=1,
            )
            grid[(gbs, tp, pp)] = plan(req).best.hardware_tflops_per_gpu
    return grid


def main() -> None:
    t0 = time.perf_counter()
    for schedules in (("1f1b",), ("1f1b", "interleaved-1f1b")):
        grid = tflops_grid(schedules)
        print(f"GPT 162B on 64 x A100 (two-level DGX A100), schedules {', '.join(schedules)}:")
        print("hardware TFLOP/s per GPU (1e12 FLOP/s) by (TP, PP)")
        rows = []
        for gbs in BATCHES:
            vals = [grid[(gbs, tp, pp)] for tp, pp in LAYOUTS]
            best = max(range(len(LAYOUTS)), key=lambda i: vals[i])
            rows.append([gbs, *vals, f"({LAYOUTS[best][0]},{LAYOUTS[best][1]})", max(vals) / min(vals)])
        print_table(
            [
                ("batch", "d"),
                *[(f"({t},{p})", ".1f") for t, p in LAYOUTS],
                ("peak at", ""),
                ("best/worst", ".2f"),
            ],
            rows,
        )
        print()
    print("SC21: peak at (8,8) for every batch; sub-optimal combinations up to 2x lower.")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
