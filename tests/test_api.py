"""The Python API: cheap import, the documented names, the same numbers as the CLI, results for notebooks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import pipesim
from cli import main
from pipesim.errors import InputError
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model
from schedules import build_schedule

ROOT = Path(__file__).resolve().parents[1]


def test_import_pipesim_loads_no_numpy_or_plotly() -> None:
    code = "import sys, pipesim; print(sorted(m for m in sys.modules if m.split('.')[0] in {'numpy', 'plotly', 'networkx'}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_documented_name_resolves() -> None:
    for name in pipesim.__all__:
        assert getattr(pipesim, name) is not None, name
    assert pipesim.Model is type(get_model("gpt-1.7b")) and pipesim.GPU is type(get_gpu("a100-80gb"))
    with pytest.raises(AttributeError):
        pipesim.no_such_thing  # noqa: B018


def test_simulate_gives_the_numbers_of_the_cli() -> None:
    report = pipesim.simulate("gpt-1.7b", "a100-80gb", tp=2, pp=2, global_batch_size=8)
    result = CliRunner().invoke(main, ["simulate", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "2",
                                       "--pp", "2", "--global-batch-size", "8", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert report.to_dict()["step_time_s"] == cli["step_time_s"]
    assert report.to_dict()["memory_per_rank_bytes"] == cli["memory_per_rank_bytes"]
    same = simulate_scenario(
        Scenario(get_model("gpt-1.7b"), get_gpu("a100-80gb"), Layout(tp=2, pp=2, global_batch_size=8))
    )
    assert pipesim.simulate(same.scenario).step_time_s == same.step_time_s == report.step_time_s


def test_simulate_on_a_schedule_is_the_engine() -> None:
    s = build_schedule("1f1b", 4, 8)
    tl = pipesim.simulate(s, pipesim.OpCosts.uniform(4, 1e-3, 2e-3))
    # 1F1B, p = 4, m = 8, F = 1 ms, B = 2 ms, no transfers: (m + p - 1)(F + B) = 33 ms (SC21 Section 2.2.1).
    assert tl.step_time_s == pytest.approx(33e-3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: pipesim.simulate("gpt-1.7b", "a100-80gb", tq=2),
        lambda: pipesim.simulate("gpt-1.7b"),
        lambda: pipesim.simulate("no-such-model", "a100-80gb"),
        lambda: pipesim.compare("gpt-1.7b", "a100-80gb", schedules=[], global_batch_size=8),
        # Wrong types name the value and what to give instead (they were AttributeError / TypeError).
        lambda: pipesim.simulate(7, "a100-80gb", global_batch_size=8),
        lambda: pipesim.simulate("gpt-1.7b", 80, global_batch_size=8),
        lambda: pipesim.simulate("gpt-1.7b", "a100-80gb", layout={"tp": 2}),
        lambda: pipesim.simulate("gpt-1.7b", "a100-80gb", tensor_parallel=2, global_batch_size=8),
        lambda: pipesim.simulate("gpt-1.7b", "a100-80gb", seq_length=2048.0, global_batch_size=8),
        lambda: Scenario("gpt-1.7b", get_gpu("a100-80gb"), Layout(global_batch_size=8)),  # type: ignore[arg-type]
        lambda: Scenario(get_model("gpt-1.7b"), get_gpu("a100-80gb"), None),  # type: ignore[arg-type]
        lambda: pipesim.plan("gpt-1.7b", "a100-80gb", nodes="2", global_batch_size=16),
        lambda: pipesim.plan("gpt-1.7b", "a100-80gb", nodes=1, gpus_per_node=0, global_batch_size=16),
        lambda: pipesim.gantt_figure(None),
        lambda: pipesim.gantt_figure("1f1b"),
        lambda: pipesim.gantt_figure([]),
        # The batch is the caller's to state, as --global-batch-size is required on the command line.
        lambda: pipesim.simulate("gpt-1.7b", "a100-80gb", tp=2),
        # The API raises schedule and topology errors as InputErrors (except pipesim.InputError catches them).
        lambda: pipesim.simulate("gpt-1.7b", "a100-80gb", schedule="1f2b", global_batch_size=8),
        lambda: pipesim.plan("gpt-1.7b", "a100-80gb", nodes=1, global_batch_size=16, topology="dgx-z"),
    ],
)
def test_bad_calls_are_refused_in_one_line(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as err:
        call()
    assert "\n" not in str(err.value)


def test_defaults_are_the_command_lines() -> None:
    # compare's default schedules: gpipe and 1f1b at vpp 1, + interleaved-1f1b at vpp 2 (README, --schedules).
    c = pipesim.compare("gpt-1.7b", "a100-80gb", tp=2, pp=2, global_batch_size=8)
    assert [r.schedule.name for r in c.reports] == ["gpipe", "1f1b"]
    c = pipesim.compare("gpt-1.7b", "a100-80gb", "1f1b, zb-h1", tp=2, pp=2, global_batch_size=8)
    assert [r.schedule.name for r in c.reports] == ["1f1b", "zb-h1"]  # a comma list, as --schedules takes
    # simulate at vpp 2 without a schedule runs interleaved-1f1b, as `pipesim simulate --vpp 2` does.
    report = pipesim.simulate("gpt-1.7b", "a100-80gb", tp=2, pp=4, vpp=2, global_batch_size=16)
    flags = ["--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "2", "--pp", "4", "--vpp", "2"]
    result = CliRunner().invoke(main, ["simulate", *flags, "--global-batch-size", "16", "--json"])
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    assert report.schedule.name == cli["layout"]["schedule"] == "interleaved-1f1b"
    # to_dict() is what --json prints, energy and notes included.
    assert report.to_dict() == cli


def test_plan_takes_the_command_lines_token_spelling_and_shows_its_signature() -> None:
    import inspect

    result = pipesim.plan("gpt-1.7b", "a100-80gb", nodes=1, global_batch_size=16, top_k=1, tokens="1B")
    assert result.request.tokens == 1e9
    params = inspect.signature(pipesim.plan).parameters
    assert list(params)[:4] == ["model", "gpu", "nodes", "global_batch_size"]
    assert "global_batch_size" in (pipesim.plan.__doc__ or "")


def test_compare_runs_vpp_only_where_the_schedule_uses_it() -> None:
    c = pipesim.compare(
        "gpt-1.7b", "a100-80gb", ["1f1b", "interleaved-1f1b"], tp=2, pp=2, vpp=2, global_batch_size=8
    )
    assert [r.scenario.layout.vpp for r in c.reports] == [1, 2]
    assert c["interleaved-1f1b"] is c.reports[1]
    frame = c.to_pandas()
    assert list(frame["schedule"]) == ["1f1b", "interleaved-1f1b"]
    assert list(frame["step_time_s"]) == [r.step_time_s for r in c.reports]
    assert c.best.step_time_s == min(r.step_time_s for r in c.reports if r.fits)
    json.dumps(c.to_dict())  # JSON-ready
    html = c._repr_html_()
    assert html.startswith("<table><caption>Comparison</caption>") and "interleaved-1f1b" in html


def test_results_are_frozen_and_tabular() -> None:
    report = pipesim.simulate("gpt-1.7b", "a100-80gb", tp=2, pp=2, global_batch_size=8)
    with pytest.raises(AttributeError):
        report.metrics = None  # type: ignore[misc]
    frame = report.to_pandas()
    assert frame.shape[0] == 1 and frame["layout.tp"][0] == 2 and frame["mfu"][0] == report.mfu
    table = pipesim.roofline("gpt-1.7b", "a100-80gb", tp=2)
    assert len(table.to_pandas()) == len(table.rows) and "qkv" in table._repr_html_()


def test_gantt_figure_of_reports_measures_against_the_gpu() -> None:
    report = pipesim.simulate("gpt-1.7b", "a100-80gb", tp=2, pp=2, global_batch_size=8)
    fig = pipesim.gantt_figure(report)
    line = [t for t in fig.data if t.meta and t.meta.get("pipesim") == "breakdown-capacity"]
    assert list(line[0].x) == [report.scenario.gpu.hbm_bytes / 2**30] * 2


def test_to_pandas_without_pandas_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    report = pipesim.simulate("gpt-1.7b", "a100-80gb", tp=2, pp=2, global_batch_size=8)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'pipesim\[pandas\]'"):
        report.to_pandas()


def test_plan_is_callable_however_the_planner_was_imported() -> None:
    import pipesim.plan.search  # binds the package to pipesim.plan

    result = pipesim.plan("gpt-1.7b", "a100-80gb", nodes=1, global_batch_size=16, top_k=1)
    assert result.best.num_gpus == 8 and len(result.to_pandas()) == len(result.entries)
    assert result.feasible == sum(1 + len(e.alike) for e in result.entries)  # rows alike in effect are one
    assert pipesim.plan.search.PlanResult is type(result)
