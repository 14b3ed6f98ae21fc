"""SC21 Table 2's DeepSpeed ZeRO-3 rows against pipesim's ZeRO-3 / FSDP model (issues 12 and 13).

Source: Narayanan et al., 'Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM',
SC21 (arXiv:2104.04473), Table 2 (published.md s1.2). The rows are a validation data set of their own: no A100
constant is fitted to them. ``benchmarks/accuracy.py`` prints this report after its own (run that); the A100
profile, the two-level network and the error helpers are that module's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import print_table  # noqa: E402
from accuracy import COMM, DEFAULT_EFFICIENCY, GPU, _err, mae  # noqa: E402

from pipesim.comm.factory import ClusterSpec, build_comm  # noqa: E402
from pipesim.cost.flops import sc21_iteration_flops  # noqa: E402
from pipesim.cost.times import Efficiency  # noqa: E402
from pipesim.sim.scenario import Scenario, simulate_scenario  # noqa: E402
from pipesim.specs.layout import Layout  # noqa: E402
from pipesim.specs.model import get_model  # noqa: E402

# SC21 Table 2, ZeRO-3 rows (published.md s1.2): (model, GPUs, global batch, microbatch, TFLOP/s per GPU).
ZERO3_ROWS = (
    ("gpt3-175b", 384, 1536, 4, 144.0),
    ("gpt3-175b", 768, 1536, 2, 88.0),
    ("gpt3-175b", 1536, 1536, 1, 44.0),
    ("gpt-529.6b", 640, 2560, 4, 138.0),
    ("gpt-529.6b", 1120, 2240, 2, 98.0),
    ("gpt-529.6b", 2240, 2240, 1, 48.0),
)
ZERO3_TARGET = 0.15  # the target: each row within 15%


def zero3_layout(gpus: int, batch: int, mbs: int) -> Layout:
    """SC21's ZeRO-3 setting (Section 5.2, Table 2): DeepSpeed ZeRO-3 inside Megatron-LM, no model
    parallelism (dp = GPUs), fp16 with fp16 gradient reduce-scatters, full activation checkpointing, unfused
    attention (2021), one microbatch per GPU per step (global batch = GPUs x microbatch in every row)."""
    return Layout(
        dp=gpus, micro_batch_size=mbs, global_batch_size=batch, recompute="full", precision="fp16",
        attention="unfused", zero_stage=3, tp_comm_overlap=False,
    )  # fmt: skip


def zero3_errors(
    eff: Efficiency = DEFAULT_EFFICIENCY, topology: str | None = None
) -> list[tuple[tuple[str, int, int, int, float], float, float, float]]:
    """(row, predicted TFLOP/s per GPU (SC21 eq. 3), relative error, exposed FSDP share of the step) for every
    ZeRO-3 row; collectives on the two-level model (one 24 GB/s NIC per GPU) or on ``topology``."""
    out = []
    for row in ZERO3_ROWS:
        model_name, gpus, batch, mbs, pub = row
        model = get_model(model_name)
        comm = build_comm(ClusterSpec(topology), gpus) if topology else COMM
        rep = simulate_scenario(Scenario(model, GPU, zero3_layout(gpus, batch, mbs), comm, eff))
        flops = sc21_iteration_flops(
            batch, model.seq_length, model.num_layers, model.hidden_size, model.vocab_size
        )
        pred = flops / (rep.step_time_s * gpus) / 1e12
        out.append((row, pred, _err(pred, pub), rep.breakdown.fsdp_comm_exposed / rep.step_time_s))
    return out


def zero3_report(eff: Efficiency = DEFAULT_EFFICIENCY) -> float:
    """Print pipesim's ZeRO-3 (pipesim.cost.fsdp: per-layer gathers prefetched one layer ahead, hidden by
    compute as far as they fit) against SC21 Table 2's measured DeepSpeed ZeRO-3; return the two-level MAE."""
    print("SC21 Table 2 ZeRO-3 rows (DeepSpeed ZeRO-3, no model parallelism; fp16, full recompute), TFLOP/s")
    print("per GPU (SC21 eq. 3); exposed = FSDP communication the compute does not hide, share of the step")
    two = zero3_errors(eff)
    topo = zero3_errors(eff, "dgx-a100")
    print_table(
        [("model", ""), ("GPUs", ""), ("mbs", ""), ("published", ".0f"), ("two-level", ".1f"), ("error", "+.1%"),
         ("exposed", ".0%"), ("topo", ".1f"), ("error", "+.1%"), ("exposed", ".0%")],
        [(name, gpus, mbs, pub, p2, e2, x2, pt, et, xt)
         for ((name, gpus, _, mbs, pub), p2, e2, x2), (_, pt, et, xt) in zip(two, topo, strict=True)],
    )  # fmt: skip
    out = mae([e for *_, e, _ in two])
    hits = sum(abs(e) <= ZERO3_TARGET for *_, e, _ in two)
    print(
        f"MAE over {len(two)} ZeRO-3 rows: {out:.2%} (two-level), {mae([e for *_, e, _ in topo]):.2%} (topology); "
        f"within {ZERO3_TARGET:.0%}: {hits} of {len(two)} (two-level), "
        f"{sum(abs(e) <= ZERO3_TARGET for *_, e, _ in topo)} of {len(topo)} (topology)  (target: every row)"
    )
    print(
        "DeepSpeed fetches per submodule (QKV, projection, MLP up, MLP down), one ahead: at micro-batch 1-2"
    )
    print(
        "the gathers set the pace (step time independent of the GPU count, as SC21 measured), at 4 the MLP-up"
    )
    print(
        "gather waits behind the short projection. The two-level model charges one HDR NIC (24 GB/s) per GPU,"
    )
    print(
        "which is what the communication-bound rows imply (8 bytes x parameters per step at 21-23 GB/s); on"
    )
    print(
        "the topology graph NCCL's rings use all 8 rails of a DGX, the collectives run 8x faster and every row"
    )
    print("is close to compute-bound: 2021's DeepSpeed ZeRO-3 moved its traffic at about one NIC per GPU.")
    return out
