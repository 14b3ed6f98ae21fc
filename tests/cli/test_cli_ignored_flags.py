"""A flag the scenario would ignore, or a combination no framework runs, is refused in one line (exit 2):
the output would otherwise look like its effect. Found by a newcomer review of the CLI (session 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

ROOT = Path(__file__).resolve().parents[2]
SIM = ("simulate", "--model", "gpt-1.7b", "--global-batch-size", "16")
MOE = ("simulate", "--model", "mixtral-8x7b", "--gpu", "h200", "--global-batch-size", "16", "--tp", "2", "--pp", "2",
       "--dp", "4")  # fmt: skip
ZBV_CSV = str(ROOT / "tests" / "data" / "zbv_pytorch_pp3_m6.csv")  # pp 3, 6 microbatches


def refused(*args: str) -> str:
    code, out, err = invoke(*args)
    assert code == 2, (args, code, out, err)
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "args, needle",
    [
        # Megatron-LM asserts pp > 1 for a virtual pipeline; one rank has nothing to interleave.
        ((*SIM, "--pp", "1", "--vpp", "2", "--schedule", "interleaved-1f1b"), "needs pp >= 2"),
        # V-shapes and DualPipe run 2 chunks per rank whatever --vpp says.
        ((*SIM, "--pp", "2", "--vpp", "3", "--schedule", "zb-v"), "always runs 2 chunks per rank"),
        ((*SIM, "--gpus-per-node", "0"), "--gpus-per-node"),
        ((*SIM, "--overlap-param-gather"), "--distributed-optimizer is off"),
        ((*SIM, "--fp8-recipe", "current"), "precision is bf16"),
        ((*SIM, "--moe-imbalance", "2"), "dense model"),
        # Review 5: the busiest of ep ranks gets at most every routed token (ep x its share), none at ep 1.
        ((*MOE, "--ep", "4", "--moe-imbalance", "1e9"), "exceeds ep=4"),
        ((*MOE, "--moe-imbalance", "2"), "at ep=1 every GPU holds every expert"),
        ((*SIM, "--tp", "8", "--pp", "2", "--gpus", "-16"), "-16 is not in the range x>=1"),
        # Review 5: a billion data-parallel replicas hung for hours; refused with its size, up front.
        (("simulate", "--model", "llama2-7b", "--tp", "2", "--pp", "2", "--dp", "1000000000", "--global-batch-size",
          "1000000000"), "= 4,000,000,000 GPUs, over the 1,048,576 one simulation can span"),
        (("plan", "--model", "gpt-1.7b", "--gpus", "2000000", "--global-batch-size", "16"), "over the 1,048,576"),
        # A limit this machine could not run past is not offered for raising (review 5): 10^12 actions at the
        # measured 210 B each (benchmarks/budgets.py) is ~196,000 GiB.
        ((*SIM, "--global-batch-size", "1000000000000"), "GiB of memory and this machine has"),
        # A page sent to - would be mixed into the report the command prints there (review 5).
        (("plan", "--model", "gpt-1.7b", "--nodes", "1", "--global-batch-size", "16", "-o", "-", "--json"),
         "-o - writes to standard output, where this command prints the ranked layouts"),
        (("roofline", "--model", "gpt-1.7b", "-o", "-"), "where this command prints the roofline tables"),
        (("plan", "--model", "gpt-1.7b", "--nodes", "1", "--global-batch-size", "16", "--workers", "1000"),
         "--workers=1000 exceeds the"),
        (("plan", "--model", "llama2-7b", "--nodes", "1", "--global-batch-size", "16", "--cp", "3"),
         "--cp 3 does not divide the 8 GPUs; valid cp: 1, 2, 4, 8"),
        (("plan", "--model", "llama2-7b", "--nodes", "1", "--global-batch-size", "16", "--fsdp", "hybrid",
          "--fsdp-shard-size", "3"), "--fsdp-shard-size 3 cannot shard any layout of 8 GPUs"),
        # No pp takes 3 chunks of llama2-7b's 32 layers: the message lists the chunk counts pp 2 takes.
        (("simulate", "--model", "llama2-7b", "--global-batch-size", "16", "--pp", "2", "--vpp", "3"),
         "valid chunks per rank (vpp) at pp=2: 1, 2, 4, 8, 16"),
        # No ep works with etp 3 here: the message lists the etp that would (it listed nothing).
        ((*MOE, "--ep", "4", "--etp", "3"), "valid etp for ep=4: 1, 2"),
        ((*SIM, "--dp", "2", "--fsdp", "full", "--distributed-optimizer"), "drop --distributed-optimizer"),
        # Without --model the comparison is synthetic: a model-run flag would change nothing (review 5).
        (("compare", "--tp", "-5"), "--tp describes a model run, but without --model"),
        (("compare", "--precision", "fp8"), "--precision describes a model run"),
        (("compare", "--zero-stage", "7"), "--zero-stage describes a model run"),
        (("compare", "--gpu", "a100-80gb"), "--gpu describes a model run"),
        (("gantt", "--recompute", "full", "-o", "never-written.html"), "--recompute describes a model run"),
        (("compare", "--memory-limit", "2"), "--memory-limit caps the memory-aware orders"),
        (("compare", "--fb-time", "100"), "--fb-time times DualPipe's overlapped F&B pairs"),
        (("gantt", "--fb-time", "100", "-o", "never-written.html"), "--fb-time times DualPipe's"),
        (("compare", "--pp", "1", "--vpp", "2"), "--vpp=2 needs pp >= 2"),
        (("compare", "--vpp", "0"), "vpp=0 must be >= 1"),
        (("compare", "--vpp", "-2"), "vpp=-2 must be >= 1"),
        (("compare", "--vpp", "2", "--schedules", "1f1b"), "none of --schedules 1f1b"),
        (("compare", "--schedules", ""), "empty item"),
        (("compare", "--schedules", "1f1b,"), "empty item"),
        (("compare", "--schedule-file", ZBV_CSV, "--pp", "4"), "has 3 (it is simulated as written)"),
        (("compare", "--schedule-file", ZBV_CSV, "-m", "8"), "has 6 (it is simulated as written)"),
        (("compare", "--model", "gpt-1.7b", "--global-batch-size", "16", "-m", "4"), "not both"),
        (("compare", "--model", "gpt-1.7b", "--global-batch-size", "16", "--forward-time", "3"), "cost model"),
        (("plan", "--model", "gpt-1.7b", "--nodes", "1", "--global-batch-size", "16", "--tp", "1,,2"), "empty item"),
        (("plan", "--model", "gpt-1.7b", "--nodes", "1", "--global-batch-size", "16", "--ep", "2"), "dense model"),
        (("plan", "--model", "gpt-1.7b", "--nodes", "1", "--global-batch-size", "16", "--max-nodes", "4"),
         "give --max-days"),
        (("plan", "--model", "gpt-1.7b", "--global-batch-size", "16", "--tokens", "1T", "--max-days", "1",
          "--max-nodes", "100000000"), "--max-nodes"),
        (("gantt", "-m", "20000", "--pp", "8", "--trace", "-"), "1,280,000 compute bars"),
        (("plan", "--model", "gpt-1.7b", "--nodes", "1", "--global-batch-size", "16", "--micro-batch-size", "0"),
         "--micro-batch-size=0 must be a positive integer"),
    ],
)  # fmt: skip
def test_ignored_or_impossible_flags_are_refused(args: tuple[str, ...], needle: str) -> None:
    assert needle in refused(*args)


def test_a_schedule_file_alone_heads_the_table_with_its_own_sizes() -> None:
    code, out, err = invoke("compare", "--schedule-file", ZBV_CSV)
    assert code == 0, err
    assert out.splitlines()[0].startswith("pp=3  microbatches=6 ")  # was pp=4 microbatches=8 (the demo's)


def test_plan_never_ranks_interleaving_on_one_pipeline_rank() -> None:
    # The experiment file asks for vpp 2; at pp 1 the planner used to rank "pp1 vpp2 interleaved-1f1b" first
    # (identical to 1f1b) and print --num-layers-per-virtual-pipeline-stage with pp 1.
    cfg = str(ROOT / "docs" / "examples" / "experiment.toml")
    code, out, err = invoke(
        "plan", "--config", cfg, "--tp", "1,2,4", "--pp", "1,2,4", "--schedules", "1f1b,interleaved-1f1b",
        "--json", "--top-k", "40",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert rows and all(r["pp"] > 1 for r in rows if r["vpp"] > 1)
    assert any(r["pp"] == 1 for r in rows)  # pp 1 is still searched, as 1f1b


def test_zero_bubble_v_reports_the_chunks_it_runs() -> None:
    code, out, err = invoke(*SIM, "--pp", "2", "--schedule", "zb-v", "--json")
    assert code == 0, err
    assert json.loads(out)["layout"]["vpp"] == 2  # as compare --model and the Gantt summary count it


def test_experiment_schedules_list_is_not_dropped_by_simulate(tmp_path: Path) -> None:
    base = (
        (ROOT / "docs" / "examples" / "experiment.toml")
        .read_text()
        .replace('schedule = "interleaved-1f1b"\n', "")
    )
    one = tmp_path / "one.toml"
    one.write_text(
        base.replace("[layout]\n", '[layout]\nschedules = "zb-h1"\nvpp = 1\n').replace("vpp = 2\n", "")
    )
    code, out, err = invoke("simulate", "--config", str(one), "--json")
    assert code == 0, err
    assert json.loads(out)["layout"]["schedule"] == "zb-h1"  # was run as 1f1b without a word
    two = tmp_path / "two.toml"
    two.write_text(base.replace("[layout]\n", '[layout]\nschedules = ["zb-h1", "1f1b"]\n'))
    assert "lists 2 schedules" in refused("simulate", "--config", str(two))


def test_synthetic_compare_at_pp_1_runs_no_interleaving() -> None:
    # The synthetic demo's 2 chunks need 2 ranks or more: at --pp 1 the default schedules are gpipe and 1f1b.
    code, out, err = invoke("compare", "--pp", "1", "--json")
    assert code == 0, err
    assert [r["schedule"] for r in json.loads(out)] == ["gpipe", "1f1b"]
