"""``--config FILE``: one experiment file for every command (keys = the command's own flags), the command line
overriding it, the shared keys a command ignores, and every bad file refused in one line naming file and key."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import pytest
from conftest import invoke as run

from pipesim.cli.config import section_keys
from pipesim.io.scenario_file import WinnerCluster, experiment_toml

EXP = """\
model = "gpt-1.7b"
gpu = "a100-80gb"

[cluster]
gpus_per_node = 8

[layout]
tp = 2
pp = 2
dp = 1
schedule = "1f1b"
micro_batch_size = 1
global_batch_size = 8
"""


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(EXP, encoding="utf-8")
    return path


def _json(*args: str) -> object:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_the_file_is_the_flags_and_typed_flags_override_it(exp: Path) -> None:
    flags = ("--model", "gpt-1.7b", "--tp", "2", "--pp", "2", "--dp", "1", "--global-batch-size", "8")
    from_file = _json("simulate", "--config", str(exp))
    assert from_file == _json("simulate", *flags)
    overridden = _json("simulate", "--config", str(exp), "--pp", "1")
    assert overridden["layout"]["pp"] == 1 and overridden == _json("simulate", *flags, "--pp", "1")
    # Megatron-LM's long name is the same key's other spelling, and the alias on the line overrides too.
    alias = _json("simulate", "--config", str(exp), "--pipeline-model-parallel-size", "1")
    assert alias == overridden


def test_one_file_serves_every_command_that_can_use_it(exp: Path, tmp_path: Path) -> None:
    # compare: schedule = NAME stands for --schedules NAME.
    rows = _json("compare", "--config", str(exp))
    assert isinstance(rows, list) and [r["schedule"] for r in rows] == ["1f1b"]
    # roofline ignores the shared keys it has no flag for (pp, dp, schedule, global_batch_size).
    roof = _json("roofline", "--config", str(exp))
    assert isinstance(roof, dict) and roof["tp"] == 2 and roof["gpu"] == "a100-80gb"
    # gpu show takes `gpu` for its argument, topo show `topology` from [cluster].
    assert _json("gpu", "show", "--config", str(exp)) == _json("gpu", "show", "a100-80gb")
    topo = tmp_path / "topo.toml"
    topo.write_text('[cluster]\ntopology = "dgx-h100"\nnodes = 2\n', encoding="utf-8")
    assert _json("topo", "show", "--config", str(topo)) == _json("topo", "show", "dgx-h100", "--nodes", "2")
    page = tmp_path / "g.html"
    code, _, err = run("gantt", "--config", str(exp), "-o", str(page))
    assert code == 0 and page.exists(), err


def test_every_command_but_the_lists_takes_config() -> None:
    from test_cli_flags import commands

    missing = [p for p, c in commands() if not any("--config" in getattr(x, "opts", []) for x in c.params)]
    assert missing == ["gpu list", "topo list"]


def test_plan_winner_file_reproduces_the_winner(tmp_path: Path) -> None:
    base = ("--model", "gpt-1.7b", "--topology", "dgx-a100", "--nodes", "2", "--global-batch-size", "64")
    win = tmp_path / "win.toml"
    code, out, err = run("plan", *base, "--workers", "1", "--top-k", "3", "--json", "--config-out", str(win))
    assert code == 0, err
    best = json.loads(out)["results"][0]
    assert win.read_text(encoding="utf-8") == json.loads(out)["config_toml"]
    sim = _json("simulate", "--config", str(win))
    assert isinstance(sim, dict) and sim["step_time_s"] == best["step_time_s"]
    # plan on the winner's file searches that one layout (its values restrict the search) and finds it again.
    again = _json("plan", "--config", str(win), "--workers", "1", "--top-k", "1")
    assert isinstance(again, dict) and again["results"][0]["step_time_s"] == best["step_time_s"]


def test_inline_model_and_gpu_round_trip(tmp_path: Path) -> None:
    from pipesim.specs.gpu import get_gpu
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import get_model

    model = replace(get_model("llama2-7b"), name="my-llama", num_layers=8)
    gpu = replace(get_gpu("h100-sxm"), name="my-gpu", tdp_w=600.0)
    lay = Layout(
        tp=2, pp=2, dp=2, vpp=2, global_batch_size=16, schedule="interleaved-1f1b", recompute="selective"
    )
    cluster = WinnerCluster(None, 1, 8, 240e9, 24e9)
    text = experiment_toml(model, gpu, lay, cluster, section_keys()["layout"], "a comment")
    assert text.startswith("# a comment\n") and "[model]" in text and "[gpu.efficiency]" in text
    path = tmp_path / "inline.toml"
    path.write_text(text, encoding="utf-8")
    got = _json("simulate", "--config", str(path))
    import pipesim
    from pipesim.comm.base import LevelCommModel

    want = pipesim.simulate(
        pipesim.Scenario(model, gpu, replace(lay, seq_length=4096), LevelCommModel(8, 240e9, 24e9))
    )
    assert isinstance(got, dict)
    assert got["step_time_s"] == pytest.approx(want.step_time_s, rel=1e-12)
    assert got["model"] == "my-llama" and got["gpu"] == "my-gpu"
    # The inline GPU keeps its server (the default cluster of a later run without [cluster]).
    from pipesim.io.readers import gpu_from_table
    from pipesim.io.values import parse_toml

    again = gpu_from_table(parse_toml(text, "inline.toml")["gpu"], "inline.toml", "x", prefix="gpu.")
    assert "[gpu.server]" in text and again.server == gpu.server


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('model = "gpt-1.7b"\nfoo = 1\n', "unknown key 'foo'; pipesim simulate takes: "),
        ('model = "gpt-1.7b"\ntop_k = 3\n', "key 'top_k' is a flag of plan, not of pipesim simulate"),
        ('model = "gpt-1.7b"\n[layout]\ntp = "eight"\n', "key 'layout.tp' = 'eight' must be an integer"),
        (
            'model = "gpt-1.7b"\n[layout]\ndp_overlap = 1\n',
            "key 'layout.dp_overlap' = 1 must be true or false",
        ),
        ('model = "gpt-1.7b"\n[energy]\npue = "high"\n', "key 'energy.pue' = 'high' must be a number"),
        (
            'model = "gpt-1.7b"\n[layout]\nnodes = 2\n',
            "key 'layout.nodes' does not belong in [layout]; put it in [cluster]",
        ),
        (
            'model = "gpt-1.7b"\n[search]\ntp = 2\n',
            "[search] is not a section; valid sections: [layout], [cluster]",
        ),
        (
            'model = "gpt-1.7b"\n[layout]\ntp = 2\ntensor_model_parallel_size = 2\n',
            "set the same flag; give one",
        ),
        ('model = "gpt-1.7b"\nconfig = "other.toml"\n', "cannot name another one"),
        ('model = "gpt-1.7b"\nrank_order = ["tp", "dp"]\n', "(rank_order = ['tp', 'dp'] from "),
        ('model = "gpt-1.7b"\n[model]\nname = "x"\n', "not valid TOML"),
        ('[model]\nname = "x"\nnum_layers = 2\n', "missing key 'model.hidden_size'"),
        (
            'model = "gpt-1.7b"\n[layout]\nglobal_batch_size = 8\nrecompute = "most"\n',
            "(layout.recompute = 'most' from ",
        ),
        ('model = "gpt-1.7b"\n[layout]\nglobal_batch_size = 8\ntp = 3\ndp = 1\npp = 1\ncp = 0\n', "from "),
    ],
)
def test_bad_files_are_one_line_naming_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    top = "" if "global_batch_size" in text else "global_batch_size = 8\n"  # only the key under test is bad
    path.write_text(top + text, encoding="utf-8")
    code, out, err = run("simulate", "--config", str(path))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err, err
    assert str(path) in err and needle in err, err


def test_missing_file_and_standard_input(tmp_path: Path, exp: Path) -> None:
    code, _, err = run("simulate", "--config", str(tmp_path / "none.toml"))
    assert code == 2 and "none.toml does not exist" in err
    result = click.testing.CliRunner().invoke(
        __import__("pipesim.cli", fromlist=["main"]).main, ["simulate", "--config", "-", "--json"], input=EXP
    )
    assert result.exit_code == 0 and json.loads(result.stdout) == _json("simulate", "--config", str(exp))


def test_help_states_the_precedence() -> None:
    code, out, _ = run("simulate", "--help")
    assert code == 0 and "Flags typed on the command line override the file" in " ".join(out.split())


def test_readme_example_is_the_shipped_file() -> None:
    root = Path(__file__).resolve().parents[2]
    example = (root / "docs" / "examples" / "experiment.toml").read_text(encoding="utf-8")
    assert f"```toml\n{example}```" in (root / "README.md").read_text(encoding="utf-8")
