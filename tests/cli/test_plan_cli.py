"""``pipesim plan`` from the command line: JSON/CSV shape, explain, tokens, scenario round trip, errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from conftest import invoke as run

BASE = [
    "plan",
    "--model",
    "gpt-1.7b",
    "--gpu",
    "a100-80gb",
    "--topology",
    "dgx-a100",
    "--nodes",
    "2",
    "--global-batch-size",
    "64",
    "--workers",
    "1",
    "--top-k",
    "3",
]


def test_json_has_candidates_feasible_and_ranked_results() -> None:
    code, out, _ = run(*BASE, "--json", "--tokens", "20B")
    assert code == 0
    data = json.loads(out)
    assert data["candidates"] >= data["feasible"] > 0
    assert data["gpus"] == 16
    rows = data["results"]
    assert len(rows) == 10  # --top default 10
    for key in (
        "tp",
        "pp",
        "dp",
        "vpp",
        "micro_batch_size",
        "schedule",
        "recompute",
        "step_time_s",
        "tokens_per_s",
        "model_tflops_per_gpu",
        "mfu",
        "peak_memory_bytes",
        "train_days",
        "gpu_hours",
    ):
        assert key in rows[0]
    simulated = [r for r in rows if r["simulated"]]
    assert len(simulated) == 3
    times = [r["step_time_s"] for r in simulated]
    assert times == sorted(times)
    # tokens/s x step time = global batch x sequence length.
    assert abs(rows[0]["tokens_per_s"] * rows[0]["step_time_s"] - 64 * 2048) < 1e-6 * 64 * 2048
    assert "--tensor-model-parallel-size" in data["megatron_args"]
    assert f"tp = {rows[0]['tp']}\n" in data["config_toml"] and "[layout]" in data["config_toml"]
    # Deterministic byte for byte.
    assert run(*BASE, "--json", "--tokens", "20B")[1] == out


def test_text_output_explain_csv_and_files(tmp_path: Path) -> None:
    html, toml = tmp_path / "plan.html", tmp_path / "win.toml"
    code, out, _ = run(*BASE, "--explain", "--tokens", "20B", "-o", str(html), "--scenario-out", str(toml))
    assert code == 0
    for text in (
        "Best layouts",
        "GiB = 2^30",
        "Rejected layouts by reason",
        "tp beyond the NVLink domain",
        "Megatron-LM arguments",
        "--pipeline-model-parallel-size",
        "[layout]",
        "days",
    ):
        assert text in out
    page = html.read_text()
    assert "Pareto front" in page and "plotly" in page.lower()
    # simulate --config takes the winner's experiment file and predicts what plan simulated for it.
    code, sim_out, _ = run("simulate", "--config", str(toml), "--json")
    assert code == 0
    rep = json.loads(sim_out)
    assert rep["fits"] and rep["layout"]["tp"] * rep["layout"]["pp"] * rep["layout"]["dp"] == 16
    best = json.loads(run(*BASE, "--json")[1])["results"][0]
    assert rep["step_time_s"] == best["step_time_s"]
    # ... and so does gantt: the winner's timeline, with its step time in the page's summary.
    page_path = tmp_path / "win.html"
    code, _, err = run("gantt", "--config", str(toml), "-o", str(page_path))
    assert code == 0, err
    gantt_html = page_path.read_text()
    assert "gpt-1.7b" in gantt_html and f"{rep['step_time_s'] * 1e3:.3f}" in gantt_html
    code, csv_out, _ = run(*BASE, "--csv", "--top", "0")
    rows = list(csv.DictReader(io.StringIO(csv_out)))
    assert code == 0 and len(rows) > 10 and "step_time_s" in rows[0] and "bubble_s" in rows[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = run(
        "plan",
        "--model",
        "llama3-405b",
        "--gpu",
        "a100-80gb",
        "--nodes",
        "1",
        "--global-batch-size",
        "8",
        "--workers",
        "1",
        "--micro-batch-size",
        "1",
    )
    assert code == 2 and "fits in no layout" in err and "state alone" in err and err.count("\n") == 1
    # A model of 10^8 layers: refused on its state before any layout is enumerated (the closest-layout
    # search took over five minutes on it).
    huge = tmp_path / "huge.toml"
    huge.write_text(
        'name = "huge"\nnum_layers = 100000000\nhidden_size = 12288\nnum_attention_heads = 96\n'
        "vocab_size = 51200\nseq_length = 2048\n"
    )
    code, _, err = run("plan", "--model", str(huge), "--gpus", "64", "--global-batch-size", "64")
    assert code == 2 and "huge fits in no layout on 64 x a100-80gb" in err and err.count("\n") == 1
    code, _, err = run(*BASE, "--tp", "3")
    assert code == 2 and "--tp 3 does not divide the 16 GPUs" in err and err.count("\n") == 1
    code, _, err = run(*BASE, "--tokens", "many")
    assert code == 2 and "--tokens" in err
    code, _, err = run(*BASE, "--max-days", "3")
    assert code == 2 and "--max-days needs --tokens" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "gpt-1.7b"\ngpu = "a100-80gb"\n[layout]\ntp = "eight"\n')
    code, _, err = run("simulate", "--config", str(bad))
    assert code == 2 and "layout.tp" in err and str(bad) in err
    code, _, err = run(*BASE, "-o", str(tmp_path / "missing" / "p.html"))
    assert code == 2 and "does not exist" in err


def test_max_days_finds_a_node_count() -> None:
    code, out, _ = run(
        "plan",
        "--model",
        "gpt-1.7b",
        "--gpu",
        "a100-80gb",
        "--global-batch-size",
        "64",
        "--tokens",
        "20B",
        "--max-days",
        "2",
        "--max-nodes",
        "16",
        "--workers",
        "1",
        "--schedules",
        "1f1b",
        "--recompute",
        "selective",
        "--json",
        "--top-k",
        "2",
    )
    assert code == 0
    data = json.loads(out)
    assert data["results"][0]["train_days"] <= 2
    probes = {p["nodes"]: p["best_days"] for p in data["nodes_search"]}
    n = data["nodes"]
    assert n in probes
    if n - 1 in probes:
        assert probes[n - 1] is None or probes[n - 1] > 2
