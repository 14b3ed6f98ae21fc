"""Shell completion (click's): the README's lines produce a script for each shell, and the completions they
ask for come from the real command tree (lazily loaded commands and their flags included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipesim.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _complete(env: dict[str, str]) -> str:
    result = CliRunner().invoke(main, [], prog_name="pipesim", env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_readme_documents_every_shell() -> None:
    shells = re.findall(r"_PIPESIM_COMPLETE=(\w+)_source pipesim", README.read_text(encoding="utf-8"))
    assert shells == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_source_scripts_call_back_into_pipesim(shell: str) -> None:
    script = _complete({"_PIPESIM_COMPLETE": f"{shell}_source"})
    assert f"_PIPESIM_COMPLETE={shell}_complete" in script and "_pipesim_completion" in script


def _bash(words: str) -> list[str]:
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    out = _complete({"_PIPESIM_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    return [line.split(",", 1)[1] for line in out.splitlines()]


def test_bash_completes_commands_flags_and_choices() -> None:
    assert _bash("pipesim sim") == ["simulate"]
    assert _bash("pipesim plan --global-b") == ["--global-batch-size"]
    assert _bash("pipesim simulate --pipe") == ["--pipeline-model-parallel-size"]
    assert _bash("pipesim gantt --plotlyjs ") == ["embed", "directory", "cdn"]


def _bash_items(words: str) -> list[tuple[str, str]]:
    """(type, value) of each completion bash gets for ``words`` (click's bash protocol: ``type,value``)."""
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    out = _complete({"_PIPESIM_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    return [tuple(line.split(",", 1)) for line in out.splitlines()]  # type: ignore[misc]


def test_preset_names_complete_for_model_gpu_topology_and_schedules() -> None:
    from pipesim.specs.gpu import gpu_names
    from pipesim.specs.model import model_names
    from schedules import schedule_names
    from topologies import preset_names

    assert _bash("pipesim simulate --model llama3-") == [n for n in model_names() if n.startswith("llama3-")]
    assert _bash("pipesim simulate --model ") == list(model_names())
    assert _bash("pipesim plan --gpu h1") == [n for n in gpu_names() if n.startswith("h1")]
    assert _bash("pipesim compare --topology dgx-") == [n for n in preset_names() if n.startswith("dgx-")]
    assert _bash("pipesim collective all-reduce -t nv") == ["nvl72"]
    assert _bash("pipesim simulate --schedule zb-v") == [n for n in schedule_names() if n.startswith("zb-v")]
    # --schedules is a comma list: the item after the last comma completes, the ones before stay.
    assert _bash("pipesim compare --schedules 1f1b,interleaved-1") == ["1f1b,interleaved-1f1b"]
    assert _bash("pipesim gantt --schedules gpipe,zb-h") == ["gpipe,zb-h1", "gpipe,zb-h2"]
    # The arguments that take a preset too.
    assert _bash("pipesim topo show dgx-h") == ["dgx-h100"]
    assert _bash("pipesim gpu show b2") == ["b200"]


def test_paths_are_left_to_the_shell() -> None:
    # A path, or a name no preset starts with, asks the shell for file completion (click's "file" type).
    assert _bash_items("pipesim simulate --model ./my") == [("file", "./my")]
    assert _bash_items("pipesim simulate --gpu mygpu") == [("file", "mygpu")]
    assert _bash_items("pipesim topo show cluster.toml") == [("file", "cluster.toml")]
    assert all(kind == "plain" for kind, _ in _bash_items("pipesim simulate --model gpt"))


def test_zsh_gets_the_same_names() -> None:
    out = _complete(
        {
            "_PIPESIM_COMPLETE": "zsh_complete",
            "COMP_WORDS": "pipesim plan --topology dgx-a",
            "COMP_CWORD": "3",
        }
    )
    assert out.splitlines()[:2] == ["plain", "dgx-a100"]
