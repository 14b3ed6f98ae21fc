"""SC21 Table 2's DeepSpeed ZeRO-3 rows against pipesim's ZeRO-3 / FSDP model (issues 12 and 13).

Source: Narayanan et al., 'Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM',
SC21 (arXiv:2104.04473), Table 2 (published.md s1.2). One A100 constant is fitted to the three GPT-3 175B
rows, ``comm_sms`` (the SMs a collective's kernels hold while it overlaps compute: :func:`fit_comm_sms`); the
three 530B rows are held out. ``benchmarks/accuracy.py`` prints this report after its own (run that); the
A100 profile, the two-level network and the error helpers are that module's.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import print_table  # noqa: E402
from accuracy import COMM, DEFAULT_EFFICIENCY, GPU, _err, mae  # noqa: E402

from pipesim.comm.factory import ClusterSpec, build_comm  # noqa: E402
from pipesim.cost.flops import sc21_iteration_flops  # noqa: E402
from pipesim.cost.times import Efficiency  # noqa: E402
from pipesim.sim.scenario import Scenario, SimulationReport, simulate_scenario  # noqa: E402
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


def _simulate(
    model_name: str, gpus: int, batch: int, mbs: int, eff: Efficiency, topology: str | None
) -> SimulationReport:
    comm = build_comm(ClusterSpec(topology), gpus) if topology else COMM
    return simulate_scenario(Scenario(get_model(model_name), GPU, zero3_layout(gpus, batch, mbs), comm, eff))


def zero3_errors(
    eff: Efficiency = DEFAULT_EFFICIENCY, topology: str | None = None
) -> list[tuple[tuple[str, int, int, int, float], float, float, float]]:
    """(row, predicted TFLOP/s per GPU (SC21 eq. 3), relative error, exposed FSDP share of the step) for every
    ZeRO-3 row; collectives on the two-level model (one 24 GB/s NIC per GPU) or on ``topology``."""
    out = []
    for row in ZERO3_ROWS:
        model_name, gpus, batch, mbs, pub = row
        model = get_model(model_name)
        rep = _simulate(model_name, gpus, batch, mbs, eff, topology)
        flops = sc21_iteration_flops(
            batch, model.seq_length, model.num_layers, model.hidden_size, model.vocab_size
        )
        pred = flops / (rep.step_time_s * gpus) / 1e12
        out.append((row, pred, _err(pred, pub), rep.breakdown.fsdp_comm_exposed / rep.step_time_s))
    return out


def zero3_memory(
    eff: Efficiency = DEFAULT_EFFICIENCY,
) -> list[tuple[tuple[str, int, int, int, float], float]]:
    """(row, predicted peak memory per GPU over the HBM) for every ZeRO-3 row (pipesim.cost.memory: the ZeRO
    paper's 16 bytes per parameter sharded over the GPUs, fp16 gradient partitions, the full-recompute stash
    and one layer's working set with the gathered submodules)."""
    out = []
    for row in ZERO3_ROWS:
        model_name, gpus, batch, mbs, _ = row
        worst = _simulate(model_name, gpus, batch, mbs, eff, None).worst_memory
        out.append((row, worst.peak / worst.capacity))
    return out


def sc21_530b_memory_floor(hbm_bytes: float = GPU.hbm_bytes) -> float:
    """Lower bound of the memory per GPU SC21's 530B ZeRO-3 run at micro-batch 4 used on 640 GPUs, as a
    fraction of the HBM: the same run did not fit on 560 GPUs (SC21 Table 2, note (*)), and only the model
    state shrinks with more GPUs (ZeRO-3's 2 + 2 + 12 = 16 bytes per parameter over all of them, Rajbhandari
    et al., SC20, Section 5; the activations of one micro-batch per GPU do not), so at 640 GPUs the run used
    more than the HBM minus 16 x 529.6e9 x (1/560 - 1/640) bytes = 1.89 GB."""
    params = get_model("gpt-529.6b").num_params()
    return (hbm_bytes - 16 * params * (1 / 560 - 1 / 640)) / hbm_bytes


FIT_MODEL = "gpt3-175b"  # the rows comm_sms is fitted to; the other model's rows are held out


def fit_comm_sms(
    eff: Efficiency = DEFAULT_EFFICIENCY, model: str = FIT_MODEL, candidates: range | None = None
) -> tuple[int, float, float]:
    """(comm_sms, MAE on ``model``'s rows, MAE on the other rows): the whole number of SMs among
    ``candidates`` (default: 0 to half the GPU's) that minimises the mean absolute error of ``model``'s ZeRO-3
    rows (the smallest on a tie), every other constant of ``eff`` kept. With the GPT-3 175B rows: 26 of the
    A100's 108 SMs (the shipped profile)."""
    best: tuple[float, int, float] | None = None
    for sms in candidates if candidates is not None else range(eff.sm_count // 2 + 1):
        errs = zero3_errors(dataclasses.replace(eff, comm_sms=sms))
        fit = mae([e for (name, *_), _, e, _ in errs if name == model])
        held = mae([e for (name, *_), _, e, _ in errs if name != model])
        if best is None or fit < best[0] - 1e-12:
            best = (fit, sms, held)
    assert best is not None
    return best[1], best[0], best[2]


def zero3_report(eff: Efficiency = DEFAULT_EFFICIENCY) -> float:
    """Print pipesim's ZeRO-3 (pipesim.cost.fsdp: per-layer gathers prefetched one layer ahead, hidden by
    compute as far as they fit) against SC21 Table 2's measured DeepSpeed ZeRO-3; return the two-level MAE."""
    print("SC21 Table 2 ZeRO-3 rows (DeepSpeed ZeRO-3, no model parallelism; fp16, full recompute), TFLOP/s")
    print("per GPU (SC21 eq. 3); exposed = FSDP communication the compute does not hide, share of the step;")
    print("mem = predicted peak memory per GPU (two-level run) over the 80 GB HBM")
    two = zero3_errors(eff)
    topo = zero3_errors(eff, "dgx-a100")
    mem = zero3_memory(eff)
    print_table(
        [("model", ""), ("GPUs", ""), ("mbs", ""), ("published", ".0f"), ("two-level", ".1f"), ("error", "+.1%"),
         ("exposed", ".0%"), ("mem", ".0%"), ("topo", ".1f"), ("error", "+.1%"), ("exposed", ".0%")],
        [(name, gpus, mbs, pub, p2, e2, x2, m, pt, et, xt)
         for ((name, gpus, _, mbs, pub), p2, e2, x2), (_, pt, et, xt), (_, m)
         in zip(two, topo, mem, strict=True)],
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
    print(
        f"Overlapped compute runs on the SMs the collectives leave it: comm_sms = {eff.comm_sms} of {eff.sm_count},"
    )
    print(
        f"fitted to the {FIT_MODEL} rows (the 530B rows held out); with none the micro-batch-4 rows come out"
    )
    print(
        "+11.5% (175B) and +17.1% (530B). 530B on 640 GPUs, the largest miss, is the one run at its memory limit:"
    )
    print(
        f"it did not fit on 560 GPUs (SC21 note *), so it used more than {sc21_530b_memory_floor():.1%} of the HBM on"
    )
    print(
        "640 (only the model state shrinks with GPUs); every other row is under 63%. Near the limit PyTorch's"
    )
    print(
        "caching allocator frees its cache and retries failed cudaMallocs (device syncs that also stall the"
    )
    print("prefetch; DeepSpeed ZeRO-3 warns these flushes are detrimental): not modelled, no published cost.")
    return out


if __name__ == "__main__":
    zero3_report()
