"""Every `pipesim` command in the README's shell blocks runs and exits 0, so the README cannot drift. An
optional part written ``[--flag a|b]`` runs once per alternative; ``[--flag]`` once with it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import invoke

README = Path(__file__).resolve().parents[2] / "README.md"

ROOT = Path(__file__).resolve().parents[2]


def _shell_lines() -> list[str]:
    lines, block = [], None
    for raw in README.read_text(encoding="utf-8").splitlines():
        if raw.strip().startswith("```"):
            block = raw.strip()[3:].strip() if block is None else None
            continue
        if block in ("bash", "console", "sh", "shell"):
            lines.append(raw)
    joined, buf = [], ""
    for line in lines:  # join continuation lines
        buf += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            joined.append(buf)
            buf = ""
    return joined


def readme_commands() -> list[str]:
    """The README's pipesim command lines, optional parts expanded."""
    out = []
    for line in _shell_lines():
        text = line.strip().removeprefix("$ ")
        text = text.split(" # ")[0].split("  #")[0].strip()
        if "pipesim " not in text and not text.endswith("pipesim"):
            continue
        if (
            "_PIPESIM_COMPLETE=" in text
        ):  # shell-completion set-up lines: tests/cli/test_completion.py runs them
            continue
        text = text[text.index("pipesim") :]
        base = re.sub(r"\s*\[[^\]]*\]", "", text)
        out.append(base)
        for opt in re.findall(r"\[([^\]]*)\]", text):
            flag, _, alts = opt.partition(" ")
            for alt in alts.split("|") if alts else [""]:
                out.append(f"{base} {flag} {alt}".strip())
    return list(dict.fromkeys(out))


def test_the_readme_has_commands() -> None:
    cmds = readme_commands()
    assert len(cmds) >= 15 and all(c.startswith("pipesim") for c in cmds)
    for sub in ("compare", "simulate", "plan", "gantt", "topo", "collective", "roofline"):
        assert any(c.split()[1] == sub for c in cmds if len(c.split()) > 1), sub


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # outputs such as -o timeline.html land here
    # Files the README names by their path in the repository (e.g. the shipped calibration sample).
    args = [str(ROOT / a) if "/" in a and (ROOT / a).is_file() else a for a in shlex.split(command)[1:]]
    if "--image" in args and "browser" not in command:
        pytest.skip("static images are covered by the browser tests")
    code, out, err = invoke(*args)
    assert code == 0, f"{command}\n{err}"
    assert "Traceback" not in out + err
    if "calibrate" in args[:1] and "nemo-h100-runs.csv" in command and "--trace" not in args:
        _check_calibration_figures(out)


def _check_calibration_figures(out: str) -> None:
    """The worked calibration example quotes its own figures: they must be the command's."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    stated = re.search(r"here: MAE ([\d.]+)% after the fit, (\d+)-fold holdout ([\d.]+)%", text)
    assert stated, "the README's calibration example lost its figures"
    mae = re.search(r"MAE after the fit: ([\d.]+)%", out)
    hold = re.search(r"(\d+)-fold holdout MAE: ([\d.]+)%", out)
    assert mae and hold, out
    assert round(float(mae.group(1)), 1) == float(stated.group(1))
    assert hold.group(1) == stated.group(2) and round(float(hold.group(2)), 1) == float(stated.group(3))


def _console_blocks() -> list[tuple[str, list[str]]]:
    """The README's ``console`` blocks: (the ``$`` command, the output lines under it)."""
    blocks, current = [], None
    for raw in README.read_text(encoding="utf-8").splitlines():
        if raw.strip() == "```console":
            current = []
        elif raw.strip() == "```" and current is not None:
            if current and current[0].startswith("$ pipesim"):
                cmd, rest = current[0][2:], current[1:]
                while cmd.endswith("\\") and rest:  # continuation lines
                    cmd, rest = cmd[:-1] + " " + rest[0].strip(), rest[1:]
                if not any(line.startswith("$ ") for line in rest):  # one command and its output
                    blocks.append((cmd, rest))
            current = None
        elif current is not None:
            current.append(raw)
    return blocks


def test_readme_console_output_is_the_commands_own() -> None:
    # A console block shows a command and what it prints: the whole output, byte for byte (the compare
    # sample's header had lost "; GiB = 2^30 bytes" and nothing noticed).
    blocks = [(cmd, lines) for cmd, lines in _console_blocks() if lines]
    assert blocks
    for cmd, lines in blocks:
        code, out, err = invoke(*shlex.split(cmd)[1:])
        assert code == 0, err
        assert out.splitlines() == lines, cmd
