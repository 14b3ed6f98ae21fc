"""``--config FILE``: an experiment file (:mod:`pipesim.io.scenario_file`) as the defaults of a command's flags.

The file's keys are driven by the running command's own parameters, so a flag added to a command is a key of
its files at once:

* a key is a long name of one of the command's flags (or arguments) with dashes as underscores
  (``micro_batch_size``, ``tensor_model_parallel_size``; ``gpu`` for ``gpu show``'s GPU argument);
* its value becomes that flag's default: **flags typed on the command line override the file**;
* the **shared keys** (``model``, ``gpu`` and every key of the ``[layout]``, ``[cluster]``, ``[energy]`` and
  ``[pipeline]`` sections, the flags of the layout, cluster, energy and synthetic-pipeline option groups)
  describe the experiment: a command that has no such flag ignores the key (``roofline`` ignores ``pp``), so
  one file serves every command. Any other key the command lacks (``top_k`` in ``simulate``) is refused,
  naming the file, the key and the commands that take it;
* ``schedule = NAME`` stands for ``schedules = NAME`` in a command that takes a list (compare, gantt, plan);
* values are typed as the flag is: integers for integer flags, numbers for numeric ones, true/false for
  switches, strings (or a list of them for repeatable flags) otherwise; a number is accepted for a text flag
  (``tp = 8`` for plan's comma list), a list of values is joined with commas, true/false reads as on/off.

Every problem is one :class:`InputError` naming the file and the key (exit status 2).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import click

from pipesim.errors import InputError

__all__ = ["SECTIONS", "annotate", "inline_spec", "load_config", "section_keys"]

CONFIG_META = "pipesim.config"  # ctx.meta: [(file, key, value, opts)] of the values the file set
INLINE_META = "pipesim.config.inline"  # ctx.meta: marker -> ModelSpec / GPUSpec of an inline table
SKIP = ("config", "help", "version")


def long_keys(param: click.Parameter) -> list[str]:
    """The experiment-file keys of ``param``: its long names without dashes (``--micro-batch-size`` ->
    ``micro_batch_size``), or an argument's name (``gpu_arg`` -> ``gpu``)."""
    if isinstance(param, click.Argument):
        return [str(param.name).removesuffix("_arg")]
    return [o[2:].replace("-", "_") for o in param.opts if o.startswith("--")]


def _flag_keys(names: tuple[str, ...]) -> frozenset[str]:
    from pipesim.cli.flags import FLAGS

    decls = (d.split("/")[0] for n in names for d in FLAGS[n][0])  # --dp-overlap/--no-dp-overlap: its on name
    return frozenset(d[2:].replace("-", "_") for d in decls if d.startswith("--"))


def section_keys() -> dict[str, frozenset[str]]:
    """Section -> the keys it may hold: the long names of the flags of its option group."""
    from pipesim.cli.options import CLUSTER_NAMES, ENERGY_NAMES, LAYOUT_NAMES, SYNTHETIC_NAMES

    return {
        "layout": _flag_keys((*LAYOUT_NAMES, "schedule", "schedules")),
        "cluster": _flag_keys((*CLUSTER_NAMES, "fabric", "oversubscription")),
        "energy": _flag_keys(ENERGY_NAMES),
        "pipeline": _flag_keys(tuple(n for n in SYNTHETIC_NAMES if n != "schedules")),
    }


SECTIONS = ("layout", "cluster", "energy", "pipeline")


def _all_commands() -> Iterator[tuple[str, click.Command]]:
    from pipesim.cli.group import main

    ctx = click.Context(main)

    def walk(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    yield from walk(sub, f"{path} {name}".strip())
        else:
            yield path, cmd

    yield from walk(main, "")


def _who_takes(key: str) -> list[str]:
    """The commands with a flag of experiment key ``key``."""
    return [path for path, cmd in _all_commands() if any(key in long_keys(p) for p in cmd.params)]


def _name(ctx: click.Context) -> str:
    """``pipesim simulate``, ``pipesim topo show``: the command as users type it, whatever the program name."""
    parts = []
    while ctx.parent is not None:
        parts.append(str(ctx.info_name))
        ctx = ctx.parent
    return " ".join(["pipesim", *reversed(parts)])


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {k: p for p in command.params if p.name not in SKIP for k in long_keys(p)}


def _is_switch(param: click.Parameter) -> bool:
    return (
        isinstance(param, click.Option)
        and param.is_bool_flag
        or isinstance(param.type, click.types.BoolParamType)
    )


def _typed(param: click.Parameter, value: Any, where: str, src: str) -> Any:
    """``value`` as ``param`` takes it from a file (rules in the module docstring)."""

    def refuse(kind: str) -> InputError:
        return InputError(f"{src}: key '{where}' = {value!r} must be {kind}")

    kind = param.type
    if _is_switch(param):
        if not isinstance(value, bool):
            raise refuse("true or false")
        return value
    if isinstance(kind, click.types.IntParamType):
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("an integer")
        return value
    if isinstance(kind, click.types.FloatParamType) or kind.name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse("a number")
        if not math.isfinite(value):
            raise refuse("a finite number")
        return value

    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "on" if v else "off"
        if isinstance(v, (int, float, str)):
            return str(v)
        raise refuse("text (or a number, true/false, a list)")

    if getattr(param, "multiple", False):
        return [text(v) for v in value] if isinstance(value, list) else [text(value)]
    if isinstance(value, list):
        if isinstance(kind, click.Choice) or not value:
            raise refuse(
                "one value"
                + (f" of {', '.join(map(str, kind.choices))}" if isinstance(kind, click.Choice) else "")
            )
        return ",".join(text(v) for v in value)
    return text(value)


def load_config(ctx: click.Context, _param: click.Parameter, path: str | None) -> None:
    """The ``--config`` callback (eager, so it runs before the other flags are processed): read ``path``
    and make its values the defaults of the command's flags (``ctx.default_map``)."""
    if path is None:
        return
    from pipesim.io.scenario_file import Entry, parse_experiment, read_experiment

    src = "standard input" if path == "-" else path
    if path == "-":
        exp = parse_experiment(click.get_text_stream("stdin").read(), src, section_keys())
    else:
        exp = read_experiment(path, section_keys())
    params = _params(ctx.command)
    shared = frozenset({"model", "gpu"}).union(*section_keys().values())
    inline = ctx.meta.setdefault(INLINE_META, {})
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    applied = ctx.meta.setdefault(CONFIG_META, [])
    entries = list(exp.entries)
    for name, spec in (("model", exp.model), ("gpu", exp.gpu)):
        if spec is not None:  # the flag's value is a marker that build_hardware looks up (inline_spec)
            marker = f"{src} [{name}]"
            inline[marker] = spec
            entries.append(Entry(name, f"[{name}]", marker))
    keys = {e.key for e in entries}
    for entry in entries:
        key = entry.key
        if key == "config":
            raise InputError(f"{src}: key '{entry.where}': an experiment file cannot name another one")
        if key == "schedule" and key not in params and "schedules" in params and "schedules" not in keys:
            key = "schedules"  # one schedule for a command that takes a list
        elif key == "schedules" and key not in params and "schedule" in params and "schedule" not in keys:
            listed = entry.value if isinstance(entry.value, list) else str(entry.value).split(",")
            if len(listed) != 1:  # simulate runs one schedule: which of the list is not ours to guess
                raise InputError(
                    f"{src}: key '{entry.where}' lists {len(listed)} schedules and {_name(ctx)} runs one; add "
                    f"the key 'schedule' (one of {', '.join(map(str, listed))})"
                )
            key, entry = "schedule", Entry(entry.key, entry.where, str(listed[0]).strip())
        param = params.get(key)
        if param is None:
            if key in shared:
                continue  # a setting of the experiment this command has no use for
            takes = _who_takes(key)
            if takes:
                raise InputError(
                    f"{src}: key '{entry.where}' is a flag of {', '.join(takes)}, not of {_name(ctx)}; "
                    "remove it or run one of those"
                )
            raise InputError(
                f"{src}: unknown key '{entry.where}'; {_name(ctx)} takes: {', '.join(sorted(params))}"
            )
        assert param.name is not None
        if param.name in origin:
            raise InputError(
                f"{src}: keys '{origin[param.name]}' and '{entry.where}' set the same flag; give one"
            )
        value = (
            entry.value
            if entry.where in ("[model]", "[gpu]")
            else _typed(param, entry.value, entry.where, src)
        )
        try:
            param.type_cast_value(ctx, value)
        except click.BadParameter as exc:
            raise InputError(f"{src}: key '{entry.where}' = {entry.value!r}: {exc.message}") from None
        values[param.name] = value
        origin[param.name] = entry.where
        opts = tuple(param.opts) if isinstance(param, click.Option) else ()
        applied.append((src, entry.where, entry.value, opts, (key, param.name), str(value)))
    ctx.default_map = {**(ctx.default_map or {}), **values}


def inline_spec(arg: str | None) -> Any:
    """The spec of an inline ``[model]`` / ``[gpu]`` table when ``arg`` is its marker, else None."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or arg is None:
        return None
    return ctx.meta.get(INLINE_META, {}).get(arg)


def annotate(meta: dict[str, Any], message: str) -> str:
    """``message`` with where a flag it names (or a value it quotes) got its value, when that was an
    experiment file and the flag was not typed: ``--tp 3 does not divide ... (layout.tp = 3 from exp.toml)``."""
    from pipesim.cli.group import ARGV_KEY

    argv = meta.get(ARGV_KEY, ())
    notes = []
    for src, where, value, opts, names, flag_value in meta.get(CONFIG_META, []):
        typed = any(a == o or a.startswith(o + "=") for a in argv for o in opts)
        named = any(f"{o} " in message or f"{o}=" in message or f"'{o}'" in message for o in opts)
        named = named or any(f"{n}=" in message for n in names) or repr(flag_value) in message
        if named and not typed and src not in message:
            notes.append(f"{where} = {value!r} from {src}")
    return f"{message} ({'; '.join(notes)})" if notes else message
