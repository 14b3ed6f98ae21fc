"""``compare``'s and ``gantt``'s synthetic scenario (no ``--model``: uniform per-stage times in milliseconds) as a
typed, checked object built from parsed flags; :meth:`SyntheticFlags.request` makes the
:class:`pipesim.sim.compare.CompareRequest`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipesim.errors import InputError

if TYPE_CHECKING:
    from pipesim.sim.compare import CompareRequest

__all__ = ["SYNTHETIC_READS", "SyntheticFlags", "build_synthetic_flags", "refuse_model_flags"]

# Of compare's and gantt's layout and cluster flags, the ones the synthetic scenario reads; the others (and
# --gpu) describe a model run: it has no model, GPU or cluster to apply them to (its passes take
# --forward-time / --backward-time), so typed without --model they would change nothing.
SYNTHETIC_READS = frozenset({"pp", "vpp", "dp_overlap"})


def refuse_model_flags() -> None:
    """Refuse, in one line, the first model-run flag (a layout or cluster flag outside :data:`SYNTHETIC_READS`,
    or ``--gpu``) the user gave to a synthetic ``compare`` or ``gantt`` (no ``--model``): it would be ignored
    without a word."""
    import click

    from pipesim.cli.options import CLUSTER_NAMES, LAYOUT_NAMES
    from pipesim.cli.specs import given

    model_only = {"gpu_arg", *LAYOUT_NAMES, *CLUSTER_NAMES} - SYNTHETIC_READS

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return
    for param in ctx.command.params:
        if param.name in model_only and given(param.name):
            flag = next(o for o in param.opts if o.startswith("--"))
            raise InputError(
                f"{flag} describes a model run, but without --model the comparison times synthetic passes "
                f"(--forward-time, --backward-time, ...); give --model (e.g. --model llama3-8b) or drop {flag}"
            )


# --------------------------------------------------------------------------- compare's synthetic scenario
@dataclass(frozen=True)
class SyntheticFlags:
    """``compare``'s synthetic options; :meth:`request` makes the :class:`CompareRequest`."""

    microbatches: int
    schedules: str | None
    forward_time: float
    backward_time: float
    weight_time: float | None
    memory_limit: float | None
    p2p_time: float
    activation_bytes: float
    dp_time: float
    dp_buckets: int
    fb_time: float | None
    optimizer: str
    weight_stash: float
    schedule_files: tuple[str, ...]

    def names(self, vpp: int) -> list[str]:
        """The ``--schedules`` names; by default (no files given) gpipe, 1f1b and, when ``vpp`` > 1,
        interleaved-1f1b (at vpp 1 it is plain 1F1B, which the schedule itself refuses to be)."""
        from pipesim.cli.render import split_names
        from pipesim.sim.compare import default_schedules

        names = split_names(self.schedules, "--schedules")
        if names or self.schedule_files:
            return names
        return default_schedules(vpp)

    def request(self, pp: int, vpp: int, dp_overlap: bool) -> CompareRequest:
        """The scenario of these options on ``pp`` ranks with ``vpp`` chunks (times in seconds)."""
        from pipesim.sim.compare import CompareRequest

        return CompareRequest(
            schedules=tuple(self.names(vpp)),
            schedule_files=tuple(self.schedule_files),
            pp=pp,
            microbatches=self.microbatches,
            vpp=vpp,
            forward_s=_ms(self.forward_time, "--forward-time"),
            backward_s=_ms(self.backward_time, "--backward-time"),
            weight_s=self._weight_s(),
            memory_limit=self.memory_limit,
            p2p_s=_ms(self.p2p_time, "--p2p-time"),
            activation_bytes=self.activation_bytes,
            dp_s=_ms(self.dp_time, "--dp-time"),
            dp_buckets=self.dp_buckets,
            dp_overlap=dp_overlap,
            stash_fraction=self.weight_stash,
            optimizer=self.optimizer,
            fb_s=None if self.fb_time is None else _ms(self.fb_time, "--fb-time"),
        )

    def _weight_s(self) -> float:
        """--weight-time in seconds: half the backward when not given; never more than the backward."""
        if self.weight_time is None:
            return _ms(self.backward_time, "--backward-time") / 2
        if self.weight_time > self.backward_time:
            raise InputError(
                f"--weight-time={self.weight_time:g} exceeds --backward-time={self.backward_time:g}: W is part of "
                f"the full backward B (I = B - W); valid: 0 to {self.backward_time:g}"
            )
        return _ms(self.weight_time, "--weight-time")


def _ms(value: float, flag: str) -> float:
    if not value >= 0:
        raise InputError(f"{flag}={value} must be >= 0 (milliseconds)")
    return value / 1000.0


def build_synthetic_flags(**values: Any) -> SyntheticFlags:
    """:class:`SyntheticFlags`, checking what CompareRequest does not (bytes >= 0, buckets >= 1)."""
    if values["activation_bytes"] < 0:
        raise InputError(f"--activation-bytes={values['activation_bytes']} must be >= 0")
    if values["dp_buckets"] < 1:
        raise InputError(f"--dp-buckets={values['dp_buckets']} must be >= 1")
    if not 0.0 <= values["weight_stash"] <= 1.0:
        raise InputError(f"--weight-stash={values['weight_stash']:g} must be within [0, 1]")
    values["schedule_files"] = tuple(values["schedule_files"])
    return SyntheticFlags(**values)
