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
