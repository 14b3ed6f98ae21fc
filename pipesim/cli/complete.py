"""Shell completion of preset names (click's ``shell_complete``): ``--model``, ``--gpu``, ``--topology``,
``--schedule`` and ``--schedules`` (a comma list: the item after the last comma) offer the presets that start
with what was typed; something that looks like a path (``./``, ``/``, ``.toml``, ``.json``), or matches no
preset, is left to the shell's file completion."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click
from click.shell_completion import CompletionItem

__all__ = ["complete"]


def _names(kind: str) -> Iterable[str]:
    if kind == "model":
        from pipesim.specs.model import model_names

        return model_names()
    if kind == "gpu":
        from pipesim.specs.gpu import gpu_names

        return gpu_names()
    if kind == "topology":
        from topologies import preset_names

        return preset_names()
    from schedules import schedule_names

    return schedule_names()


def _looks_like_path(text: str) -> bool:
    return "/" in text or text.startswith(".") or text.endswith((".toml", ".json"))


def complete(
    kind: str, listed: bool = False
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """The ``shell_complete`` callback offering the ``kind`` presets (model, gpu, topology, schedule); with
    ``listed`` the value is a comma list and the last item is completed (``1f1b,inter`` ->
    ``1f1b,interleaved-1f1b``)."""

    def callback(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        head, _, last = incomplete.rpartition(",") if listed else ("", "", incomplete)
        prefix = f"{head}," if head else ""
        if not listed and _looks_like_path(last):
            return [CompletionItem(incomplete, type="file")]
        items = [CompletionItem(prefix + n) for n in _names(kind) if n.startswith(last)]
        if not items and not listed:
            return [CompletionItem(incomplete, type="file")]  # a file of the user's
        return items

    return callback
