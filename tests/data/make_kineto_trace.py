"""Writes kineto_step.json: a PyTorch profiler (Kineto) Chrome trace of one step of the run in kineto_step.csv,
made from pipesim's own op model with KNOWN constants, so that ``pipesim calibrate --trace`` can be checked to
recover them (tests/cli/test_calibrate_cli.py). Format as torch.profiler's export_chrome_trace writes it: a
``traceEvents`` list of complete events ("ph": "X") with "cat" ("kernel" for GPU kernels, "cpu_op" for
operators), "name", "ts" and "dur" in microseconds, "pid", "tid" and "args". Kernel names are the kind a real
trace shows (cuBLAS sm90 GEMMs, FlashAttention, ATen element-wise and norm kernels, NCCL collectives).

Run from the repository root: python tests/data/make_kineto_trace.py
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from pipesim.calib.trace import _rank0_units  # noqa: E402
from pipesim.cli.calibrate import read_runs_csv  # noqa: E402
from pipesim.cost.times import time_ops  # noqa: E402
from pipesim.specs.gpu import get_gpu  # noqa: E402

KNOWN = {"gemm_max": 0.62, "attention": 0.42, "hbm": 0.70, "nccl": 0.80}
GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cublas"
NCCL = {
    "all-reduce": "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm*, unsigned long, ncclWork*)",
    "all-gather": "ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)",
    "reduce-scatter": "ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevComm*, unsigned long, ncclWork*)",
}


def kernel_name(op) -> str:  # type: ignore[no-untyped-def]
    if op.kind == "gemm":
        return GEMM
    if op.kind == "attention":
        return "flash_fwd_kernel" if op.phase == "F" else "flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel"
    if op.kind == "comm":
        return NCCL[op.collective]
    if "norm" in op.name:
        return "void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>"
    return "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>"


def main() -> None:
    run = read_runs_csv(str(HERE / "kineto_step.csv"), "h100-sxm")[0]
    gpu = get_gpu("h100-sxm")
    eff = replace(gpu.profile, **KNOWN)
    events: list[dict[str, object]] = []
    ts = 0.0
    for ops, count in _rank0_units(run.model, run.layout):
        timed = time_ops(ops.all, gpu, run.layout.precision, eff, run.comm, list(range(run.layout.tp)))
        for _ in range(count * run.layout.num_microbatches):
            for t in timed:
                dur = (t.full_s if t.full_s is not None else t.time_s) * 1e6
                events.append({"ph": "X", "cat": "cpu_op", "name": f"aten::{t.op.name}", "pid": 1, "tid": 1,
                               "ts": round(ts, 3), "dur": 4.0, "args": {}})  # fmt: skip
                events.append({"ph": "X", "cat": "kernel", "name": kernel_name(t.op), "pid": 0, "tid": 7,
                               "ts": round(ts + 5.0, 3), "dur": round(dur, 3),
                               "args": {"device": 0, "stream": 7, "correlation": len(events)}})  # fmt: skip
                ts += dur + 5.0
    trace = {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}],
             "traceEvents": events}  # fmt: skip
    (HERE / "kineto_step.json").write_text(json.dumps(trace, separators=(",", ":")) + "\n")
    print(f"{len(events)} events, {ts / 1e6:.4f} s")


if __name__ == "__main__":
    main()
