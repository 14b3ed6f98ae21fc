"""`pipesim simulate` and `pipesim compare --model` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

ISSUE_EXAMPLE = [
    "simulate",
    "--model",
    "gpt3-175b",
    "--gpu",
    "a100-80gb",
    "--tp",
    "8",
    "--pp",
    "8",
    "--dp",
    "1",
    "--vpp",
    "3",
    "--micro-batch-size",
    "1",
    "--global-batch-size",
    "64",
    "--recompute",
    "full",
]


def test_issue_example_text() -> None:
    code, out, err = invoke(*ISSUE_EXAMPLE)
    assert code == 0, err
    for text in (
        "step time",
        "tokens/s",
        "samples/s",
        "model TFLOP/s per GPU",
        "MFU / HFU",
        "pipeline bubble",
        "TP communication",
        "PP communication",
        "DP communication",
        "optimizer step",
        "GiB = 2^30 bytes",
        "weights",
        "grads",
        "optimizer",
        "activations",
        "Verdict: fits",
    ):
        assert text in out, text
    assert "interleaved-1f1b" in out


def test_issue_example_json() -> None:
    code, out, _ = invoke(*ISSUE_EXAMPLE, "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("step_time_s", "tokens_per_s", "model_tflops_per_gpu", "mfu", "hfu", "bubble_ratio", "fits"):
        assert key in data
    assert set(data["time_breakdown_s"]) >= {
        "compute",
        "bubble",
        "tp_comm",
        "pp_comm",
        "dp_comm",
        "optimizer",
    }
    for part in data["time_breakdown_s"].values():
        assert set(part) == {"total", "exposed"}
    assert set(data["memory_per_rank_bytes"]) >= {"weights", "grads", "optimizer", "activations", "peak"}
    assert len(data["memory_by_pipeline_rank_bytes"]) == 8
    assert data["tokens_per_s"] == pytest.approx(64 * 2048 / data["step_time_s"])
    assert data["layout"]["microbatches"] == 64 and data["fits"] is True


def test_json_is_deterministic() -> None:
    assert invoke(*ISSUE_EXAMPLE, "--json")[1] == invoke(*ISSUE_EXAMPLE, "--json")[1]


def test_oom_verdict_in_text() -> None:
    code, out, _ = invoke("simulate", "--model", "gpt3-175b", "--tp", "8", "--global-batch-size", "8")
    assert code == 0 and "OUT OF MEMORY" in out


def test_gpus_derives_dp() -> None:
    code, out, _ = invoke(
        "simulate",
        "--model",
        "llama3-8b",
        "--gpu",
        "h100-sxm",
        "--tp",
        "2",
        "--gpus",
        "16",
        "--json",
        "--global-batch-size",
        "64",
    )
    assert code == 0 and json.loads(out)["layout"]["dp"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "gpt3-175b", "--tp", "5"],
            "tp=5 does not divide num_attention_heads=96; valid tp: 1, 2, 3, 4, 6, 8",
        ),
        (["--model", "gpt3-175b", "--pp", "7"], "pp x chunks = 7 does not divide num_layers=96"),
        (
            ["--model", "gpt3-175b", "--dp", "2", "--global-batch-size", "5"],
            "global-batch-size=5 is not divisible",
        ),
        (["--model", "gpt3-175b", "--tp", "8", "--pp", "8", "--gpus", "100"], "does not equal --gpus=100"),
        (["--model", "gpt-9"], "unknown model 'gpt-9'; valid presets: gpt-1.7b"),
        (["--model", "gpt3-175b", "--gpu", "a200"], "unknown gpu 'a200'; valid presets: v100"),
        (["--model", "gpt3-175b", "--recompute", "most"], "recompute='most'; valid: none, selective, full"),
        (
            ["--model", "gpt3-175b", "--gpu", "v100"],
            "gpu 'v100' has no bf16 peak; supported for training: fp16",
        ),
        (
            ["--model", "llama3-8b", "--gpu", "h100-sxm", "--precision", "fp4"],
            "gpu 'h100-sxm' has no fp4 peak; supported for training: bf16, fp16, fp8; GPUs with fp4: b200, gb200",
        ),
        (["--model", "gpt3-175b", "--schedule", "zigzag"], "unknown schedule 'zigzag'"),
        (["--tp", "8"], "--model is required"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    if "--model" in args and "--global-batch-size" not in args:  # required: its absence is refused first
        args = [*args, "--global-batch-size", "64"]
    code, out, err = invoke("simulate", *args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_config_json_names_file(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text('{"hidden_size": 4096, "num_attention_heads": 32}')
    code, _, err = invoke("simulate", "--model", str(f))
    assert code == 2 and str(f) in err and "missing key 'num_hidden_layers'" in err


def test_model_from_config_json(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text(
        json.dumps(
            {
                "hidden_size": 1024,
                "intermediate_size": 4096,
                "num_hidden_layers": 8,
                "num_attention_heads": 16,
                "num_key_value_heads": 4,
                "vocab_size": 32000,
                "max_position_embeddings": 2048,
                "hidden_act": "silu",
            }
        )
    )
    code, out, err = invoke("simulate", "--model", str(f), "--pp", "2", "--global-batch-size", "8", "--json")
    assert code == 0, err
    assert json.loads(out)["layout"]["seq_length"] == 2048


def test_compare_with_model_compares_schedules() -> None:
    code, out, err = invoke(
        "compare", "--model", "gpt3-175b", "--tp", "8", "--pp", "8", "-m", "16", "--vpp", "2", "--json"
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["schedule"] for r in rows] == ["gpipe", "1f1b", "interleaved-1f1b"]
    gpipe, one, inter = rows
    assert gpipe["step_time_s"] == pytest.approx(one["step_time_s"], rel=0.02)  # same bubble (SC21 2.2.1)
    assert inter["bubble_ratio"] < one["bubble_ratio"]
    # GPipe stashes all 16 microbatches; 1F1B at most pp = 8.
    assert gpipe["memory_per_rank_bytes"]["activations"] > one["memory_per_rank_bytes"]["activations"]
    code, out, _ = invoke(
        "compare", "--model", "gpt3-175b", "--tp", "8", "--pp", "8", "-m", "16", "--vpp", "2"
    )
    assert code == 0 and "TFLOP/s/GPU" in out and "interleaved-1f1b" in out
    # With a model --vpp defaults to 1, as in every command: interleaved-1f1b (plain 1F1B at vpp 1) leaves
    # the default schedules instead of failing.
    code, out, err = invoke("compare", "--model", "gpt3-175b", "--tp", "8", "--pp", "8", "-m", "16", "--json")
    assert code == 0, err
    assert [r["schedule"] for r in json.loads(out)] == ["gpipe", "1f1b"]


def test_compare_without_model_is_unchanged() -> None:
    code, out, _ = invoke("compare", "--json", "--pp", "4", "-m", "8")
    assert code == 0 and len(json.loads(out)) == 3


def test_topology_comm_model_plugs_in() -> None:
    base = [
        "simulate",
        "--model",
        "gpt3-175b",
        "--tp",
        "8",
        "--pp",
        "8",
        "--dp",
        "2",
        "--global-batch-size",
        "32",
    ]
    code, out, err = invoke(*base, "--topology", "dgx-a100", "--json")
    assert code == 0, err
    topo = json.loads(out)
    level = json.loads(invoke(*base, "--json")[1])
    # Same compute; only the communication times differ between the two communication models.
    assert topo["time_breakdown_s"]["compute"]["total"] == pytest.approx(
        level["time_breakdown_s"]["compute"]["total"]
    )
    assert topo["time_breakdown_s"]["tp_comm"]["total"] != level["time_breakdown_s"]["tp_comm"]["total"]
    code, _, err = invoke(*base, "--topology", "nope")
    assert code == 2 and "unknown topology 'nope'" in err


def test_gantt_takes_the_model_flags(tmp_path: Path) -> None:
    out = tmp_path / "g.html"
    code, stdout, err = invoke(
        "gantt",
        "--model",
        "gpt3-175b",
        "--tp",
        "8",
        "--pp",
        "4",
        "-m",
        "8",
        "--schedules",
        "1f1b",
        "-o",
        str(out),
    )
    assert code == 0, err
    assert "wrote" in stdout and "gpt3-175b" in out.read_text()


TOPO_RUN = ("simulate", "--model", "gpt3-175b", "--gpu", "a100-80gb", "--topology", "dgx-a100", "--tp", "8",
            "--pp", "8", "--dp", "1", "--global-batch-size", "64", "--json")  # fmt: skip


def test_rank_order_puts_tp_across_servers_and_it_costs() -> None:
    # Megatron order (tp fastest) keeps each TP group of 8 inside one DGX A100; pp-tp-dp spreads it over 8
    # servers, so its all-reduces leave NVLink (~240 GB/s per GPU) for the NICs (~24 GB/s per GPU).
    code, out, _ = invoke(*TOPO_RUN)
    inside = json.loads(out)
    code2, out2, _ = invoke(*TOPO_RUN, "--rank-order", "pp-tp-dp")
    across = json.loads(out2)
    assert code == code2 == 0
    tp_in, tp_out = inside["time_breakdown_s"]["tp_comm"], across["time_breakdown_s"]["tp_comm"]
    tp_in, tp_out = (v["total"] if isinstance(v, dict) else v for v in (tp_in, tp_out))
    assert tp_out > 3 * tp_in
    assert across["step_time_s"] > inside["step_time_s"]


def test_placement_line_reports_crossing_groups() -> None:
    code, out, _ = invoke(*TOPO_RUN[:-1], "--rank-order", "dp-tp-pp")
    assert code == 0
    assert "rank order dp-tp-pp" in out and "TP 0/8 groups" in out and "PP 8/8 groups" in out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ("--nodes", "4"),
            "layout needs 64 GPUs but topology dgx-a100 with 4 nodes has 32; use at least 8 nodes",
        ),
        (("--rank-order", "tp-pp"), "must be a permutation of tp, dp, pp"),
    ],
)
def test_topology_placement_errors(extra: tuple[str, ...], needle: str) -> None:
    code, _, err = invoke(*TOPO_RUN, *extra)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_nodes_needs_topology() -> None:
    code, _, err = invoke(
        "simulate",
        "--model",
        "gpt3-175b",
        "--tp",
        "8",
        "--pp",
        "8",
        "--nodes",
        "8",
        "--global-batch-size",
        "8",
    )
    assert code == 2 and "--nodes needs --topology" in err


FSDP_RUN = [
    "simulate",
    "--model",
    "gpt-7.5b",
    "--gpu",
    "a100-80gb",
    "--topology",
    "dgx-a100",
    "--nodes",
    "4",
    "--dp",
    "32",
    "--global-batch-size",
    "64",
    "--recompute",
    "full",
]


def test_fsdp_flags_run_and_report_fsdp_communication() -> None:
    code, out, err = invoke(*FSDP_RUN, "--fsdp", "hybrid", "--fsdp-shard-size", "8", "--json")
    assert code == 0, err
    data = json.loads(out)
    fsdp = data["time_breakdown_s"]["fsdp_comm"]
    assert 0.0 <= fsdp["exposed"] <= fsdp["total"] and fsdp["total"] > 0
    assert data["layout"]["fsdp"] == "hybrid" and data["layout"]["fsdp_shard_size"] == 8
    assert data["layout"]["zero_stage"] == 3 and data["layout"]["reshard_after_forward"] is True
    for key in ("precision", "attention", "dp_overlap", "tp_comm_overlap", "gpus"):  # the rest stays
        assert key in data["layout"]
    code, out, err = invoke(*FSDP_RUN, "--fsdp", "full", "--no-reshard-after-forward")
    assert code == 0, err
    assert "FSDP gather/reduce-scatter" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fsdp-shard-size", "8"], "fsdp-shard-size=8 needs fsdp=hybrid"),
        (["--fsdp", "hybrid", "--fsdp-shard-size", "5"], "must divide dp x cp = 32"),
        (["--fsdp", "full", "--zero-stage", "2"], "valid zero-stage with --fsdp: 0 or 3"),
        (["--no-reshard-after-forward"], "no-reshard-after-forward needs sharded parameters"),
        (["--fsdp", "zero3"], "fsdp='zero3'; valid: none, full, hybrid"),
    ],
)
def test_bad_fsdp_flags_exit_2_in_one_line(extra: list[str], message: str) -> None:
    code, _, err = invoke(*FSDP_RUN, *extra)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
