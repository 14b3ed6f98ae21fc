"""Issue 15: every bad input refused in one line (exit 2, no traceback, nothing written), every run bounded,
every output written safely. One test per kind of failure, each with several cases."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import invoke

from pipesim.io.atomic import atomic_write_text, write_outputs

ROOT = Path(__file__).resolve().parents[2]
MODEL = ("--model", "gpt-1.7b")
SIM = ("simulate", *MODEL, "--global-batch-size", "8")  # simulate requires the batch, as plan does


def refused(*args: str, needle: str = "") -> str:
    """Run the CLI, assert one line on stderr with exit status 2 and ``needle`` in it; return it."""
    code, out, err = invoke(*args)
    assert code == 2, (args, code, out, err)
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in out + err
    assert needle in err, (needle, err)
    return err


# --------------------------------------------------------------------------- files that are not what they say
@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "adir"
    d.mkdir()
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\x00\xff\xfe\x80")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    deep_toml = tmp_path / "deep.toml"
    deep_toml.write_text("x = " + "[" * 50_000 + "]" * 50_000 + "\n")
    unreadable = tmp_path / "secret.toml"
    unreadable.write_text("x = 1\n")
    unreadable.chmod(0)
    return {"dir": d, "binary": binary, "deep": deep, "deep_toml": deep_toml, "unreadable": unreadable}


@pytest.mark.parametrize("kind", ["dir", "binary", "deep", "deep_toml"])
@pytest.mark.parametrize("flag", ["--model", "--gpu", "--config", "--topology", "--schedule-file"])
def test_unusable_input_files_are_one_line(bad_files: dict[str, Path], kind: str, flag: str) -> None:
    path = str(bad_files[kind])
    if flag == "--model":
        err = refused("simulate", "--model", path)
    elif flag == "--gpu":
        err = refused(*SIM, "--gpu", path)
    elif flag == "--config":
        err = refused("simulate", "--config", path)
    elif flag == "--topology":
        err = refused("topo", "show", path)
    else:
        err = refused("compare", "--schedule-file", path)
    assert path.rstrip("/") in err or "directory" in err


def test_unreadable_file_names_it(bad_files: dict[str, Path]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files of any mode")
    refused("simulate", "--model", str(bad_files["unreadable"]), needle=str(bad_files["unreadable"]))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("0F99999999999999999999\n", "microbatch 0 never appears"),
        ("0F0,0B0\n1F0,1B0,10000000000F0\n", "stage 2 never appears"),
        ("0F0,0B0\n1F0,1B0\n,,\n", ""),  # a trailing blank row is fine or refused, never a crash
    ],
)
def test_csv_with_huge_indices_is_refused_quickly(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text)
    code, out, err = invoke("compare", "--schedule-file", str(path))
    assert code in (0, 2) and "Traceback" not in out + err
    if needle:
        assert code == 2 and needle in err


# --------------------------------------------------------------------------- finite numbers only
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
@pytest.mark.parametrize(
    "args",
    [
        ("compare", "--activation-bytes"),
        ("compare", "--dp-time"),
        ("compare", "--forward-time"),
        (*SIM, "--intra-node-GBps"),
        (*SIM, "--pue"),
        ("gantt", "-o", "x.html", "--gpu-memory-gib"),
        ("plan", *MODEL, "--nodes", "1", "--global-batch-size", "8", "--max-days"),
        ("topo", "show", "dgx-a100", "--oversubscription"),
    ],
)
def test_non_finite_flags_are_refused_naming_the_flag(args: tuple[str, ...], value: str) -> None:
    refused(*args, value, needle=f"'{args[-1]}'")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[gpu]\nbase = 'a100-80gb'\nmemory_GB = inf\n", "memory_GB"),
        ("[gpu]\nbase = 'a100-80gb'\nhbm_bandwidth_GBps = nan\n", "hbm_bandwidth_GBps"),
        # the issue's cases: each was a ZeroDivisionError traceback, an internal error or a wrong step time
        *(
            (f"[gpu]\nbase = 'h100-sxm'\n[efficiency]\n{k} = {v}\n", f"key 'efficiency.{k}' = {v} must be")
            for k, v in (
                ("gemm_half_dim", "inf"),
                ("gemm_half_dim", "nan"),
                ("launch_s", "inf"),
                ("kernel_overhead_s", "inf"),
                ("kernel_overhead_s", "nan"),
                ("step_overhead_s", "inf"),
                ("step_overhead_s", "nan"),
            )
        ),
    ],
)
def test_non_finite_toml_values_are_refused_naming_the_key(tmp_path: Path, table: str, key: str) -> None:
    path = tmp_path / "g.toml"
    path.write_text(table.replace("[gpu]\n", ""))
    refused(*SIM, "--gpu", str(path), needle=key)


def test_the_issue_command_refuses_an_infinite_half_dim_naming_the_file_once(tmp_path: Path) -> None:
    path = tmp_path / "h3.toml"
    path.write_text('base = "h100-sxm"\n[efficiency]\ngemm_half_dim = inf\n')
    args = ("simulate", "--model", "llama2-7b", "--global-batch-size", "16", "--tp", "8", "--gpu", str(path))
    err = refused(
        *args, needle="key 'efficiency.gemm_half_dim' = inf must be a finite number in [0, 1,000,000]"
    )
    assert err.count(str(path)) == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "model = 'mixtral-8x7b'\nglobal_batch_size = 64\nep = 8\ndp = 8\nmoe_imbalance = inf\n",
            "'moe_imbalance' = inf",
        ),
        ("model = 'llama2-7b'\nglobal_batch_size = 16\n[energy]\npue = nan\n", "'energy.pue' = nan"),
    ],
)
def test_non_finite_experiment_values_are_refused_naming_the_key(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    refused("simulate", "--config", str(path), needle=f"{path}: key {needle} must be a finite number")


def test_moe_imbalance_flag_must_be_finite() -> None:
    refused(
        "simulate",
        "--model",
        "mixtral-8x7b",
        "--global-batch-size",
        "64",
        "--ep",
        "8",
        "--dp",
        "8",
        "--moe-imbalance",
        "inf",
        needle="'--moe-imbalance'",
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_refused(tmp_path: Path, constant: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        '{"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, '
        f'"vocab_size": 100, "rms_norm_eps": {constant}}}'
    )
    refused(
        *SIM[:1], "--model", str(path), "--global-batch-size", "8", needle=f"{constant} is not a JSON number"
    )


def test_non_finite_topology_values_are_refused(tmp_path: Path) -> None:
    src = (ROOT / "topologies" / "presets" / "dgx-a100.toml").read_text()
    bad = tmp_path / "t.toml"
    bad.write_text(src.replace("latency_us = ", "latency_us = nan # ", 1))
    if bad.read_text() == src:
        pytest.skip("preset has no latency_us key to corrupt")
    refused("topo", "show", str(bad), needle="finite")


def test_tokens_too_large_is_refused() -> None:
    refused(*SIM, "--tokens", "1e400", needle="--tokens")


# --------------------------------------------------------------------------- bounded work
@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("compare", "-m", "1000000000"), "--max-actions"),
        (("simulate", *MODEL, "--global-batch-size", "10000000"), "--max-actions"),
        (("compare", *MODEL, "-m", "100000000"), "--max-actions"),
        (("gantt", "--schedules", "1f1b", "--pp", "256", "-m", "2048", "-o", "p.html"), "--max-bars"),
        (("topo", "show", "dgx-h100", "--nodes", "100000"), "--max-gpus"),
        (("topo", "draw", "nvl72", "--nodes", "1000", "-o", "t.html"), "--max-gpus"),
        (("collective", "all-reduce", "-t", "dgx-h100", "--nodes", "100000"), "--max-gpus"),
        (
            (
                "simulate",
                *MODEL,
                "--global-batch-size",
                "800000",
                "--topology",
                "dgx-a100",
                "--nodes",
                "100000",
            ),
            "--max-gpus",
        ),
        (
            ("plan", *MODEL, "--nodes", "1", "--global-batch-size", "10000000", "--workers", "1"),
            "--max-actions",
        ),
        (
            (
                "gantt",
                "--schedules",
                "1f1b",
                "--pp",
                "8",
                "-m",
                "1000",
                "--iterations",
                "1000",
                "--trace",
                "t",
            ),
            "--max-actions",
        ),
    ],
)
def test_runaway_work_is_refused_with_size_limit_and_option(
    args: tuple[str, ...], option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    err = refused(*args, needle=option)
    assert "over the limit of" in err
    assert os.listdir(tmp_path) == []


def test_the_limits_can_be_raised() -> None:
    code, _, err = invoke("compare", "--schedules", "1f1b", "-m", "64", "--max-actions", "100")
    assert code == 2 and "--max-actions 512" in err
    code, _, _ = invoke("compare", "--schedules", "1f1b", "-m", "64", "--max-actions", "512")
    assert code == 0


def test_plan_top_k_is_bounded() -> None:
    refused("plan", *MODEL, "--nodes", "1", "--global-batch-size", "8", "--top-k", "100000", needle="1024")


# --------------------------------------------------------------------------- safe outputs
def test_new_file_mode_follows_umask_and_existing_mode_is_kept(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.txt"
        atomic_write_text(new, "x")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        atomic_write_text(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text() == "new"
    finally:
        os.umask(old)


def test_symlink_is_written_through(tmp_path: Path) -> None:
    target = tmp_path / "real.html"
    target.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    code, _, err = invoke("gantt", "--schedules", "1f1b", "-o", str(link))
    assert code == 0, err
    assert link.is_symlink() and "<html" in target.read_text().lower()


def test_fifo_is_written_through(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    atomic_write_text(fifo, "through the pipe")
    out, _ = reader.communicate(timeout=30)
    assert out == b"through the pipe" and stat.S_ISFIFO(fifo.lstat().st_mode)


def test_dash_is_stdout() -> None:
    code, out, err = invoke("gantt", "--schedules", "1f1b", "--trace", "-")
    assert code == 0, err
    assert out.lstrip().startswith("{") and "traceEvents" in out and "wrote -" in err


@pytest.mark.parametrize("path", ["newdir/", "."])
def test_directory_outputs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.chdir(tmp_path)
    refused("gantt", "-o", path, needle="directory")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [
        ("gantt", "-o", "x", "--trace", "x"),
        ("gantt", "--trace", "-", "-o", "-"),
        ("plan", *MODEL, "--nodes", "1", "--global-batch-size", "8", "-o", "x", "--scenario-out", "./x"),
        (
            "plan",
            *MODEL,
            "--nodes",
            "1",
            "--global-batch-size",
            "8",
            "--scenario-out",
            "x.png",
            "--image",
            "x.png",
        ),
        ("roofline", *MODEL, "-o", "x.png", "--image", "x.png"),
        ("topo", "draw", "dgx-a100", "-o", "x.svg", "--image", "x.svg"),
    ],
)
def test_two_outputs_on_one_path_are_refused_before_work(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    refused(*args, needle="both write")
    assert os.listdir(tmp_path) == []


def test_failed_image_leaves_no_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("BROWSER_PATH", str(broken))  # kaleido draws with this browser: it fails at once
    out = tmp_path / "out"
    out.mkdir()
    refused("gantt", "--schedules", "1f1b", "-o", str(out / "p.html"), "--image", str(out / "p.png"))
    assert os.listdir(out) == []


def test_all_or_nothing_when_one_output_fails(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    with pytest.raises(Exception, match="does not exist"):
        write_outputs([(good, b"a"), (tmp_path / "missing" / "bad.txt", b"b")])
    assert os.listdir(tmp_path) == []


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import pipesim.io.atomic as atomic
        atomic.exit_on_sigterm()
        real = os.replace
        def slow_replace(a, b):
            print("staged", flush=True)
            time.sleep(30)
            real(a, b)
        os.replace = slow_replace
        atomic.atomic_write_text({str(tmp_path / "out.txt")!r}, "x" * 1000)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"staged"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert os.listdir(tmp_path) == []


def test_full_stdout_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "cli.py", "compare", "--json"],
            cwd=ROOT,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: cannot write to standard output: No space left on device"


def test_full_output_file_is_named(tmp_path: Path) -> None:
    # A full disk while writing -o names that file, not standard output (review 5). /dev/full is written in
    # place (a device); the staged path of a regular file goes through the same naming.
    code, _, err = invoke("gantt", "-o", "/dev/full")
    assert code == 2 and err == "error: /dev/full: No space left on device\n"
    from pipesim.io import atomic

    class Full(io.BytesIO):
        def write(self, _data: object) -> int:
            raise OSError(28, "No space left on device")  # what write() raises on ENOSPC: no file name

    def fdopen(fd: int, *_args: object) -> Full:
        os.close(fd)
        return Full()

    target = tmp_path / "g.html"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(atomic.os, "fdopen", fdopen)
        with pytest.raises(OSError) as info:
            atomic.atomic_write_text(target, "x")
    assert info.value.filename == str(target) and os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- conventions
def test_bare_pipesim_prints_help_and_succeeds() -> None:
    code, out, err = invoke()
    assert code == 0 and "Commands:" in out and err == ""


def test_error_names_the_flag_the_user_typed() -> None:
    refused("compare", *MODEL, "-m", "0", needle="-m/--microbatches=0")


def test_unavailable_algorithm_lists_the_ones_that_work() -> None:
    refused(
        "collective",
        "all-reduce",
        "-t",
        "dgx-a100",
        "--gpus",
        "8",
        "--algo",
        "nvls",
        needle="valid here: auto",
    )


def test_a_bug_shows_a_traceback_and_asks_for_a_report(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipesim.sim.compare as compare

    def boom(*_: object) -> None:
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(compare, "compare_schedules", boom)
    code, _, err = invoke("compare")
    assert code == 1 and "ZeroDivisionError: planted bug" in err and "please report it" in err


def test_a_schedule_file_is_counted_before_it_is_read(tmp_path: Path) -> None:
    # Review 5: --max-actions did not bound a --schedule-file (a 5M-action file ran past 2 minutes). Its cells
    # are counted before the file is parsed: 4 ranks x 50 microbatches x (F, B) = 400 cells.
    f = tmp_path / "s.csv"
    f.write_text(
        "\n".join(
            ",".join([f"{r}F{m}" for m in range(50)] + [f"{r}B{m}" for m in range(50)]) for r in range(4)
        )
    )
    refused(
        "compare",
        "--schedule-file",
        str(f),
        "--max-actions",
        "100",
        needle=f"{f} (400 cells) = 400 compute actions",
    )
    refused(
        "gantt",
        "--schedule-file",
        str(f),
        "--max-actions",
        "100",
        "-o",
        str(tmp_path / "g.html"),
        needle="400",
    )
    assert sorted(os.listdir(tmp_path)) == ["s.csv"]
