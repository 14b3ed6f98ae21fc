"""Mapping the (tp, dp, pp) rank grid onto global GPU ranks, and the process groups that follow.

Megatron-LM's default order puts tensor parallel fastest, then data parallel, then pipeline parallel:
global rank = tp_i + tp * (dp_i + dp * pp_i). Global rank g sits on GPU g of the cluster (node g // gpus_per_node),
so with tp <= GPUs per node every TP group stays inside a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipesim.errors import InputError

__all__ = ["RankGrid", "DEFAULT_ORDER"]

DEFAULT_ORDER: tuple[str, str, str] = ("tp", "dp", "pp")


@dataclass(frozen=True)
class RankGrid:
    """The rank grid of a layout; ``order`` lists the dimensions fastest-varying first."""

    tp: int
    dp: int
    pp: int
    order: tuple[str, str, str] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        for name in ("tp", "dp", "pp"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be >= 1")
        if sorted(self.order) != ["dp", "pp", "tp"]:
            raise InputError(
                f"rank order {'-'.join(self.order)} must be a permutation of tp, dp, pp (e.g. tp-dp-pp)"
            )

    @property
    def world_size(self) -> int:
        """Number of GPUs the layout needs: tp * dp * pp."""
        return self.tp * self.dp * self.pp

    def rank(self, tp_i: int, dp_i: int, pp_i: int) -> int:
        """Global rank of grid coordinate (tp_i, dp_i, pp_i)."""
        coords = {"tp": tp_i, "dp": dp_i, "pp": pp_i}
        sizes = {"tp": self.tp, "dp": self.dp, "pp": self.pp}
        g, stride = 0, 1
        for dim in self.order:
            g += coords[dim] * stride
            stride *= sizes[dim]
        return g

    def tp_group(self, dp_i: int = 0, pp_i: int = 0) -> list[int]:
        """Global ranks of the tensor-parallel group at (dp_i, pp_i)."""
        return [self.rank(t, dp_i, pp_i) for t in range(self.tp)]

    def dp_group(self, tp_i: int = 0, pp_i: int = 0) -> list[int]:
        """Global ranks of the data-parallel group at (tp_i, pp_i)."""
        return [self.rank(tp_i, d, pp_i) for d in range(self.dp)]

    def pp_group(self, tp_i: int = 0, dp_i: int = 0) -> list[int]:
        """Global ranks of the pipeline (stage 0 .. pp-1) at (tp_i, dp_i)."""
        return [self.rank(tp_i, dp_i, p) for p in range(self.pp)]
