"""The accuracy benchmark's figures as tests: predictions against published measurements (published.md).

End to end: SC21 Tables 1-2 PTD-P rows, TFLOP/s per GPU counted with SC21 eq. (3). Per layer: Korthikanti et
al. Table 4. Assumptions per row are in benchmarks/accuracy.py's docstring.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from pipesim.specs.efficiency import Efficiency
from pipesim.specs.gpu import get_gpu


def _load(name: str = "accuracy") -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"pipesim_{name}_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ACC = _load()
ZERO3 = _load("accuracy_zero3")
A100 = get_gpu("a100-80gb").profile


def test_rows_cover_the_published_tables() -> None:
    assert len(ACC.END_TO_END) == 16  # SC21 Table 1 (10 rows) + Table 2 PTD-P (6 rows)
    assert len(ACC.TABLE4) == 5
    for row in ACC.END_TO_END:
        assert row.dp * row.tp * row.pp == row.gpus
        assert row.global_batch % (row.micro_batch * row.dp) == 0


def test_end_to_end_a100_mae_within_3_percent() -> None:
    errors = ACC.end_to_end_errors(A100)
    assert ACC.mae([e for _, _, e in errors]) <= 0.03
    assert max(abs(e) for _, _, e in errors) <= 0.10


def test_overlapped_gradient_reduction_takes_its_sms_from_the_backward() -> None:
    # SC21 Table 1's 1.7B row: one micro-batch of 16 per rank, its gradients (42 buckets of 40M parameters)
    # all-reduced under the backward (DDP torch). NCCL holds comm_sms = 26 of the A100's 108 SMs while it runs,
    # so the backward takes 26/108 x (42-1)/42 x min(reduction, backward) longer: with one micro-batch at pp 1
    # that is exactly what the step gains over the same profile with comm_sms = 0.
    from pipesim.sim.scenario import Scenario, build_scenario_schedule, simulate_scenario, stage_costs
    from pipesim.specs.model import get_model

    row = ACC.END_TO_END[0]
    model, layout = get_model(row.model), ACC.row_layout(row)
    free = replace(A100, comm_sms=0)
    with_sms = simulate_scenario(Scenario(model, ACC.GPU, layout, ACC.COMM, A100))
    without = Scenario(model, ACC.GPU, layout, ACC.COMM, free)
    costs = stage_costs(without, build_scenario_schedule(without)).costs
    k = costs.dp_buckets
    assert (k, layout.num_microbatches) == (42, 1)
    expected = 26 / 108 * (k - 1) / k * min(costs.dp_reduce_s[0], costs.backward_s[0])
    gained = with_sms.step_time_s - simulate_scenario(without).step_time_s
    assert gained == pytest.approx(expected, rel=1e-9) and gained > 0.06
    # Without the overlap (DDP local: the all-reduce after the flush) nothing overlaps, nothing slows.
    after = replace(layout, dp_overlap=False)
    assert simulate_scenario(Scenario(model, ACC.GPU, after, ACC.COMM, A100)).step_time_s == pytest.approx(
        simulate_scenario(Scenario(model, ACC.GPU, after, ACC.COMM, free)).step_time_s, rel=1e-12
    )


def test_table4_per_layer_mae_within_5_percent() -> None:
    errors = ACC.layer_errors(A100)
    assert ACC.mae([x for *_, ef, eb in errors for x in (ef, eb)]) <= 0.05


def test_the_calibration_matters() -> None:
    # An uncalibrated guess (GEMMs at 90% of peak, HBM at 95%) overshoots the published throughput by > 10%:
    # the benchmark can fail.
    guess = Efficiency(gemm_max=0.9, gemm_half_dim=0.0, hbm=0.95, sm_count=108, tile_m=128, tile_n=128)
    assert ACC.mae([e for _, _, e in ACC.end_to_end_errors(guess)]) > 0.10


def test_1t_row_uses_sc21_eq3() -> None:
    row = next(r for r in ACC.END_TO_END if r.model == "gpt-1t")
    pred = ACC.predict_end_to_end(row)
    assert pred == pytest.approx(row.published_tflops, rel=0.10)


def test_topology_model_keeps_the_accuracy() -> None:
    # Not recalibrated: every collective timed on the dgx-a100 preset instead of the two-level model.
    errors = ACC.end_to_end_errors(A100, "dgx-a100")
    assert ACC.mae([e for _, _, e in errors]) <= 0.10


NEMO_ACC = _load("accuracy_nemo")


@pytest.mark.parametrize("gpu", ["h100-sxm", "b200"])
def test_nemo_rows_mae_within_5_percent(gpu: str) -> None:
    runs = NEMO_ACC.gpu_runs(gpu)["NeMo performance summary (FP8)"]
    assert len(runs) == {"h100-sxm": 10, "b200": 2}[gpu]
    errs = NEMO_ACC.errors(runs, get_gpu(gpu), get_gpu(gpu).profile)
    assert ACC.mae([e for *_, e in errs]) <= 0.05


def test_h100_fp8_was_too_fast_with_the_a100_constants() -> None:
    # The finding: the A100 constants on H100 (fp8 at the bf16 fraction, no quantization, no fixed
    # cost) predict the NeMo FP8 steps 15-30% too fast; the H100 profile is what fixes it.
    runs = NEMO_ACC.gpu_runs("h100-sxm")["NeMo performance summary (FP8)"]
    errs = NEMO_ACC.errors(runs, get_gpu("h100-sxm"), Efficiency())
    assert max(e for *_, e in errs) < -0.10


def test_megatron_readme_ranking() -> None:
    runs = NEMO_ACC.gpu_runs("h100-sxm")["Megatron-LM README (BF16)"]
    gpu = get_gpu("h100-sxm")
    errs = NEMO_ACC.errors(runs, gpu, gpu.profile)
    assert len(errs) == 9
    flops = [r.measured_s * t for r, t in zip(runs, NEMO_ACC._published_tflops(), strict=True)]
    rho = NEMO_ACC.spearman(
        [f / p for f, (_, p, _) in zip(flops, errs, strict=True)], NEMO_ACC._published_tflops()
    )
    assert rho >= 0.6  # the issue measured about 0.2 before the per-GPU profile


def test_spearman() -> None:
    assert NEMO_ACC.spearman([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert NEMO_ACC.spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def test_zero3_rows_of_sc21_table2() -> None:
    # SC21 Table 2's DeepSpeed ZeRO-3 rows (published.md s1.2) with DeepSpeed's per-submodule fetches,
    # prefetched one submodule ahead (pipesim.cost.fsdp), on the calibration's two-level network (one 24 GB/s
    # HDR NIC per GPU). Micro-batch 1 and 2 are communication-bound (SC21: 88 x 768 = 44 x 1536 aggregate
    # TFLOP/s, the same step time), micro-batch 4 partly: a layer's MLP-up gather waits behind the short
    # projection, and the compute that overlaps a collective runs on the SMs it leaves (the A100 profile's
    # comm_sms = 26 of 108, fitted to the three 175B rows). Measured: +0.0, +3.6, +0.1% (175B, fitted) and +5.7,
    # -4.7, -3.4% (530B, held out), MAE 2.91%. Before: 6.75% with every SM left to compute (+11.5% and +17.1%
    # at micro-batch 4), 9.74% when every step of a ring spanning servers paid the network's hop latency.
    rows = ZERO3.zero3_errors(A100)
    assert len(rows) == 6
    assert ACC.mae([e for *_, e, _ in rows]) <= 0.035
    for (name, gpus, _, mbs, pub), pred, err, exposed in rows:
        assert abs(err) <= ZERO3.ZERO3_TARGET, (name, gpus, pred, pub)
        assert exposed > (0.4 if mbs <= 2 else 0.1)  # exposed gathers and reduce-scatters, share of the step
    held_out = [e for (name, *_), _, e, _ in rows if name != ZERO3.FIT_MODEL]
    assert ACC.mae(held_out) <= 0.05


def test_zero3_comm_sms_is_the_fit_to_the_175b_rows() -> None:
    # The shipped value is the fit's (benchmarks/accuracy_zero3.py fit_comm_sms scans 0..54; checked here on
    # its neighbourhood): the 175B rows' MAE is lowest at 26 SMs, with the 530B rows held out at 4.6%.
    assert A100.comm_sms == 26 and A100.sm_count == 108
    sms, fit, held = ZERO3.fit_comm_sms(A100, candidates=range(24, 29))
    assert sms == 26
    assert fit <= 0.013 and held <= 0.05
    # Without it (every SM left to compute) the micro-batch-4 rows come out 11-17% fast.
    errs = ZERO3.zero3_errors(replace(A100, comm_sms=0))
    assert [round(e, 3) for (*_, mbs, _), _, e, _ in errs if mbs == 4] == [0.115, 0.171]


def test_zero3_miss_is_the_row_at_its_memory_limit() -> None:
    # What sets SC21's 530B-on-640-GPU ZeRO-3 row (the largest miss, +5.7%) apart from the other five: memory. SC21 could not fit
    # it on 560 GPUs (Table 2, note *) and only ZeRO-3's 16 bytes per parameter shrink with the GPU count, so on
    # 640 it used more than 80e9 - 16 x 529.6e9 x (1/560 - 1/640) = 78.1e9 bytes, 97.6% of the HBM; pipesim's
    # own estimate puts it at 103% and every other row under 63% (the allocator's cache flushes near the limit
    # are not modelled: no published figure gives their count or cost).
    floor = ZERO3.sc21_530b_memory_floor()
    assert floor == pytest.approx(1 - 16 * 529.6e9 * (1 / 560 - 1 / 640) / 80e9, rel=1e-3)
    assert floor == pytest.approx(0.976, abs=1e-3)
    mem = {(name, gpus): frac for (name, gpus, *_), frac in ZERO3.zero3_memory(A100)}
    assert mem.pop(("gpt-529.6b", 640)) > floor
    assert max(mem.values()) < 0.65


def test_zero3_on_the_topology_graph_is_compute_bound() -> None:
    # On the dgx-a100 graph NCCL's rings spread a group of whole servers over all 8 HDR rails: the gathers take
    # an eighth of the two-level time and every row is close to compute-bound (what the network allows, not
    # what 2021's DeepSpeed reached).
    for _, pred, _, exposed in ZERO3.zero3_errors(A100, "dgx-a100"):
        assert exposed < 0.20 and pred > 160  # SC21 measured 44-144


def test_the_reports_table_printer_lines_columns_up(capsys: pytest.CaptureFixture[str]) -> None:
    # benchmarks/_table.py: text left-aligned, numbers right-aligned, each column as wide as its widest cell or
    # title, two spaces between columns, a rule under the titles; without a header only the indented rows.
    table = _load("_table")
    columns = [("model", ""), ("GPUs", ""), ("error", "+.1%")]
    rows = [("gpt3-175b", 384, 0.093), ("gpt-1t", 3072, -0.1337)]
    table.print_table(columns, rows)
    assert capsys.readouterr().out.splitlines() == [
        "model      GPUs   error",
        "-----------------------",
        "gpt3-175b   384   +9.3%",
        "gpt-1t     3072  -13.4%",
    ]
    table.print_table(columns, rows, indent="  ", header=False)
    assert capsys.readouterr().out.splitlines() == ["  gpt3-175b   384   +9.3%", "  gpt-1t     3072  -13.4%"]


def test_sc21_figure13_tensor_versus_pipeline_parallelism() -> None:
    # SC21 Section 5.4.1 / Figure 13 (published.md s1.5 tp_vs_pp; validation, nothing fitted): a 162B GPT on 64
    # A100 peaks at TP = 8 and sub-optimal (TP, PP) are "up to 2x" slower. benchmarks/sc21_tp_vs_pp.py prints
    # the grid. Measured (1F1B, hardware TFLOP/s): batch 32: 93.3 124.2 143.6 68.3 43.5 for (2,32) (4,16)
    # (8,8) (16,4) (32,2); batch 128: 142.8 161.8 166.1 73.1 45.1; batch 512: 164.7 175.0 172.9 75.0 46.0.
    fig13 = _load("sc21_tp_vs_pp")
    grid = fig13.tflops_grid()
    for gbs in (32, 128):  # the peak is TP = 8, the server's GPUs
        assert max(fig13.LAYOUTS, key=lambda tp_pp: grid[(gbs, *tp_pp)]) == (8, 8), gbs
    # At batch 512 the model MISSES the claim: TP 4 x PP 16 comes out 1.2% above TP 8 (its 15/512 bubble and
    # a last stage carrying 2 layers + the LM head, against TP 8's twice-as-many all-reduce bytes per GPU).
    assert grid[(512, 8, 8)] >= 0.98 * max(grid[(512, t, p)] for t, p in fig13.LAYOUTS)
    # Inside the server beats across it at every batch; TP across servers on the two-level model pays 24 GB/s
    # per GPU for every ring, so it is slower than SC21 found: best / (32,2) 3.3-3.8 (SC21: "up to 2x"); on the
    # dgx-a100 graph (NCCL's channels use every NIC of the server) 1.15-1.29. The two bracket the measurement.
    for gbs in fig13.BATCHES:
        inside = min(grid[(gbs, t, p)] for t, p in fig13.LAYOUTS if t <= 8)
        assert inside > max(grid[(gbs, 16, 4)], grid[(gbs, 32, 2)])
        assert 2.0 < max(grid[(gbs, t, p)] for t, p in fig13.LAYOUTS) / grid[(gbs, 32, 2)] < 4.0
    # TP 2 x PP 32 at batch 32: 1F1B's bubble (p-1)/m = 31/32 against 7/32 at PP 8 (SC21 eq. 1) leaves it
    # well below the peak: (32 + 7) / (32 + 31) = 0.62 of it from the bubbles alone, 0.65 measured.
    assert grid[(32, 2, 32)] / grid[(32, 8, 8)] == pytest.approx((32 + 7) / (32 + 31), abs=0.05)
