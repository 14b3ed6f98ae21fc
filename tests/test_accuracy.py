"""The accuracy benchmark's figures as tests: predictions against published measurements (published.md).

End to end: SC21 Tables 1-2 PTD-P rows, TFLOP/s per GPU counted with SC21 eq. (3). Per layer: Korthikanti et
al. Table 4. Assumptions per row are in benchmarks/accuracy.py's docstring.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pipesim.cost.times import DEFAULT_EFFICIENCY, Efficiency


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"
    spec = importlib.util.spec_from_file_location("pipesim_accuracy_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ACC = _load()


def test_rows_cover_the_published_tables() -> None:
    assert len(ACC.END_TO_END) == 16  # SC21 Table 1 (10 rows) + Table 2 PTD-P (6 rows)
    assert len(ACC.TABLE4) == 5
    for row in ACC.END_TO_END:
        assert row.dp * row.tp * row.pp == row.gpus
        assert row.global_batch % (row.micro_batch * row.dp) == 0


def test_end_to_end_mae_within_10_percent() -> None:
    errors = ACC.end_to_end_errors(DEFAULT_EFFICIENCY)
    assert ACC.mae([e for _, _, e in errors]) <= 0.10
    assert max(abs(e) for _, _, e in errors) <= 0.10


def test_table4_per_layer_mae_within_5_percent() -> None:
    errors = ACC.layer_errors(DEFAULT_EFFICIENCY)
    assert ACC.mae([x for *_, ef, eb in errors for x in (ef, eb)]) <= 0.05


def test_the_calibration_matters() -> None:
    # An uncalibrated guess (GEMMs at 90% of peak, HBM at 95%) overshoots the published throughput by > 10%:
    # the benchmark can fail.
    guess = Efficiency(gemm_max=0.9, gemm_half_dim=0.0, hbm=0.95)
    assert ACC.mae([e for _, _, e in ACC.end_to_end_errors(guess)]) > 0.10


def test_1t_row_uses_sc21_eq3() -> None:
    row = next(r for r in ACC.END_TO_END if r.model == "gpt-1t")
    pred = ACC.predict_end_to_end(row)
    assert pred == pytest.approx(row.published_tflops, rel=0.10)


def test_topology_model_keeps_the_accuracy() -> None:
    # Not recalibrated: every collective timed on the dgx-a100 preset instead of the two-level model.
    errors = ACC.end_to_end_errors(DEFAULT_EFFICIENCY, "dgx-a100")
    assert ACC.mae([e for _, _, e in errors]) <= 0.10
