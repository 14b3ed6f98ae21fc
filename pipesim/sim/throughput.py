"""The one definition of a step's throughput figures, shared by a simulation (:class:`pipesim.sim.scenario.
SimulationReport`) and a plan row (:class:`pipesim.plan.results.PlanEntry`).

* tokens/s = tokens per step / step time;
* model TFLOP/s per GPU = model FLOPs per step / (step time x GPUs) (Korthikanti et al. 2022 eq. (7),
  generalised; MoE counts active parameters, as Megatron-LM does); MFU = that / the dense peak;
* hardware TFLOP/s per GPU adds the recomputed forward (SC21 eq. (3) with full recomputation); HFU likewise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Throughput"]


class Throughput:
    """Mixin: the throughput figures of a result that has ``step_time_s``, ``num_gpus``, ``tokens_per_step``,
    ``model_flops``, ``hardware_flops`` and ``peak_flops`` (fields or properties)."""

    def _get(self, name: str) -> Any:
        return getattr(self, name)

    @property
    def tokens_per_s(self) -> float:
        """Training tokens per second over the whole cluster."""
        return float(self._get("tokens_per_step")) / float(self._get("step_time_s"))

    def _per_gpu(self, flops: float) -> float:
        return flops / (float(self._get("step_time_s")) * int(self._get("num_gpus"))) / 1e12

    @property
    def model_tflops_per_gpu(self) -> float:
        """Model FLOPs (no recomputation) per second per GPU, in TFLOP/s."""
        return self._per_gpu(float(self._get("model_flops")))

    @property
    def hardware_tflops_per_gpu(self) -> float:
        """Hardware FLOPs (recomputation included) per second per GPU, in TFLOP/s."""
        return self._per_gpu(float(self._get("hardware_flops")))

    @property
    def mfu(self) -> float:
        """Model FLOPs utilisation: model TFLOP/s per GPU / the dense peak."""
        return self.model_tflops_per_gpu * 1e12 / float(self._get("peak_flops"))

    @property
    def hfu(self) -> float:
        """Hardware FLOPs utilisation: hardware TFLOP/s per GPU / the dense peak."""
        return self.hardware_tflops_per_gpu * 1e12 / float(self._get("peak_flops"))
