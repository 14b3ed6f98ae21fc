"""The command line's shape: each command's flag set is frozen here (so a flag cannot be added twice or lost by
accident; change this table in the commit that changes a flag), every flag string is declared once per
command, and start-up imports only what the command needs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from pipesim.cli.flags import FLAGS
from pipesim.cli.group import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]

# Long option names (and arguments in capitals) of every command, sorted.
FROZEN = {
    "calibrate": "--config --fit --folds --gpu --output --trace RUNS_CSV",
    "collective": "--algo --config --fabric --gpus --json --max-gpus --maxbytes --minbytes --nodes --oversubscription --stepfactor --topology --wide OP",
    "compare": "--activation-bytes --attention --backward-time --config --context-parallel-size --cp --cp-comm --cuda-graphs --distributed-optimizer --dp --dp-buckets --dp-overlap --dp-time --ep --etp --expert-model-parallel-size --expert-tensor-parallel-size --fb-time --forward-time --fp8-recipe --fsdp --fsdp-shard-size --global-batch-size --gpu --gpus --gpus-per-node --inter-node-GBps --intra-node-GBps --json --max-actions --max-gpus --memory-limit --micro-batch-size --microbatches --model --moe-imbalance --no-cuda-graphs --no-dp-overlap --no-overlap-p2p-comm --no-reshard-after-forward --no-tp-comm-overlap --nodes --num-layers-per-virtual-pipeline-stage --optimizer --overlap-p2p-comm --overlap-param-gather --p2p-time --pipeline-model-parallel-size --pp --precision --rank-order --recompute --recompute-granularity --reshard-after-forward --schedule-file --schedules --seq-length --sequence-parallel --tensor-model-parallel-size --topology --tp --tp-comm-overlap --tp-comm-overlap-forward --uneven-layers --use-distributed-optimizer --vpp --weight-stash --weight-time --wide --zero-stage",
    "gantt": "--activation-bytes --attention --backward-time --config --context-parallel-size --cp --cp-comm --cuda-graphs --distributed-optimizer --dp --dp-buckets --dp-overlap --dp-time --ep --etp --expert-model-parallel-size --expert-tensor-parallel-size --fb-time --forward-time --fp8-recipe --fsdp --fsdp-shard-size --global-batch-size --gpu --gpu-memory-gib --gpus --gpus-per-node --image --inter-node-GBps --intra-node-GBps --iterations --max-actions --max-bars --max-gpus --memory-limit --micro-batch-size --microbatches --model --moe-imbalance --no-cuda-graphs --no-dp-overlap --no-overlap-p2p-comm --no-reshard-after-forward --no-tp-comm-overlap --nodes --num-layers-per-virtual-pipeline-stage --optimizer --output --overlap-p2p-comm --overlap-param-gather --p2p-time --pipeline-model-parallel-size --plotlyjs --pp --precision --rank-order --recompute --recompute-granularity --reshard-after-forward --schedule-file --schedules --seq-length --sequence-parallel --tensor-model-parallel-size --topology --tp --tp-comm-overlap --tp-comm-overlap-forward --trace --uneven-layers --use-distributed-optimizer --vpp --weight-stash --weight-time --zero-stage",
    "gpu list": "--json --wide",
    "gpu show": "--config --json GPU_ARG",
    "plan": "--allow-cross-node-tp --attention --config --config-out --cp --csv --cuda-graphs --dask-scheduler --distributed-optimizer --dp-overlap --ep --etp --explain --fsdp --fsdp-shard-size --global-batch-size --gpu --gpus --gpus-per-node --image --inter-node-GBps --intra-node-GBps --json --max-actions --max-days --max-gpus --max-nodes --max-pp --max-tp --micro-batch-size --model --no-cuda-graphs --no-dp-overlap --no-overlap-p2p-comm --no-tp-comm-overlap --node-overhead-W --nodes --optimizer --output --overlap-p2p-comm --pipeline-model-parallel-size --plotlyjs --pp --precision --price-per-gpu-hour --pue --recompute --scenario-out --schedules --seq-length --sequence-parallel --tensor-model-parallel-size --tokens --top --top-k --topology --tp --tp-comm-overlap --uneven-layers --vpp --wide --workers",
    "roofline": "--attention --config --gpu --gpus-per-node --image --intra-node-GBps --json --max-gpus --micro-batch-size --model --no-tp-comm-overlap --output --plotlyjs --precision --recompute --recompute-granularity --seq-length --sequence-parallel --tensor-model-parallel-size --topology --tp --tp-comm-overlap --wide",
    "simulate": "--attention --config --context-parallel-size --cp --cp-comm --cuda-graphs --distributed-optimizer --dp --dp-overlap --ep --etp --expert-model-parallel-size --expert-tensor-parallel-size --fp8-recipe --fsdp --fsdp-shard-size --global-batch-size --gpu --gpus --gpus-per-node --inter-node-GBps --intra-node-GBps --json --max-actions --max-gpus --micro-batch-size --model --moe-imbalance --no-cuda-graphs --no-dp-overlap --no-overlap-p2p-comm --no-reshard-after-forward --no-tp-comm-overlap --node-overhead-W --nodes --num-layers-per-virtual-pipeline-stage --optimizer --overlap-p2p-comm --overlap-param-gather --pipeline-model-parallel-size --pp --precision --price-per-gpu-hour --pue --rank-order --recompute --recompute-granularity --reshard-after-forward --schedule --seq-length --sequence-parallel --tensor-model-parallel-size --tokens --topology --tp --tp-comm-overlap --tp-comm-overlap-forward --uneven-layers --use-distributed-optimizer --vpp --wide --zero-stage",
    "topo draw": "--config --fabric --image --max-gpus --nodes --output --oversubscription --plotlyjs TOPOLOGY",
    "topo list": "--json --wide",
    "topo show": "--config --fabric --json --max-gpus --nodes --oversubscription --wide TOPOLOGY",
}


def commands() -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(main)

    def walk(cmd: click.Command, path: list[str]) -> Iterator[tuple[str, click.Command]]:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    yield from walk(main, [])


def test_flag_sets_are_frozen() -> None:
    got = {}
    for path, cmd in commands():
        names = []
        for p in cmd.params:
            if isinstance(p, click.Option):
                names += [o for o in p.opts + p.secondary_opts if o.startswith("--")]
            else:
                names.append(str(p.name).upper())
        got[path] = " ".join(sorted(names))
    assert got == FROZEN


@pytest.mark.parametrize("path", sorted(FROZEN))
def test_no_option_string_twice_in_a_command(path: str) -> None:
    (cmd,) = [c for p, c in commands() if p == path]
    strings = [o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts]
    assert len(strings) == len(set(strings)), sorted(s for s in strings if strings.count(s) > 1)
    keywords = [p.name for p in cmd.params]
    assert len(keywords) == len(set(keywords))


def test_every_declared_flag_is_used_and_every_command_listed() -> None:
    used = {p.name for _, c in commands() for p in c.params}
    assert set(FLAGS) <= used | {"model_arg"}, set(FLAGS) - used
    assert {path.split()[0] for path in FROZEN} == set(COMMANDS)


def _modules_after(*args: str) -> set[str]:
    code = (
        "import sys, json\n"
        "from cli import main\n"
        "try:\n"
        f"    main({list(args)!r}, prog_name='pipesim')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def test_help_imports_click_only() -> None:
    mods = _modules_after("--help")
    assert not mods & {"numpy", "networkx", "plotly", "rich"}, mods & {"numpy", "networkx", "plotly", "rich"}
    assert not any(m.startswith("pipesim.cli.") and m not in ("pipesim.cli.group",) for m in mods)


def test_compare_imports_neither_networkx_nor_plotly() -> None:
    mods = _modules_after("compare", "--json")
    assert "networkx" not in mods and "plotly" not in mods
