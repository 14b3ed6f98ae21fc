"""Published H100 and B200 training runs as :class:`pipesim.calib.fit.Run` rows (calibration data).

Sources (the only ones: ../shared/reference/):

* NeMo performance summary (nemo-performance.json, transcribed from NVIDIA/NeMo docs/source/performance/, one
  record per row with its source commit): the newest value of every pre-training row pipesim can model, FP8 on
  DGX H100 and DGX B200. Context-parallel rows (CP > 1) are validation only, never fitted. Refused, with the
  reason printed:
  the Nemotron rows (no shape for them in this benchmark), rows with an incomplete layout
  (``usable: false`` or a missing TP/PP), fine-tuning rows. Measured step time: the record's
  ``step_time_s_derived`` (GBS x seq / (tokens/s/GPU x GPUs)); for rows with only model TFLOP/s/GPU, step =
  NeMo's model FLOPs / (TFLOP/s/GPU x GPUs), with NeMo's own formula (NVIDIA/NeMo nemo/utils/flops_formulas.py,
  ``llama3``: gbs s L h^2 (12 + 12 g/a + 18 f/h + 12 s/h + 6 V/(L h))); a missing micro-batch size is taken as 1
  (NeMo's recipes' default; an assumption). Settings NeMo's recipes default to and the doc states: FP8 GEMMs
  (delayed scaling), distributed optimizer, sequence parallelism with TP, TP communication overlap in both
  directions, fused (cuDNN) attention, no recomputation, interleaved 1F1B when VP is given.
* Megatron-LM README H100 weak-scaling table (published.md section 8; Megatron-Core r0.8.0, BF16, seq 4096,
  vocab 131,072, DP/TP/PP communication overlap on): GPT models with 4h MLP and full multi-head attention; the
  README gives TFLOP/s/GPU, so step = Megatron's model FLOPs / (TFLOP/s x GPUs) with Megatron-LM's formula
  (training.py num_floating_point_operations: 72 B s L h^2 (1 + s/(6h) + V/(12 L h)) for this architecture, the
  no-recompute form of SC21 eq. 3). Micro-batch size 1 (the README gives none; an assumption).

GPT-3 5B / 20B / 175B in NeMo: NeMo's GPTConfig shapes (nemo-performance.md), vocabulary 51,200 (the doc gives
none: Megatron's padded GPT-2 vocabulary as in SC21, an assumption), dropout as in GPT training.
Communication: each GPU's own server (pipesim.specs.server), the default of every command: the dgx-h100
topology preset for H100 rows; B200 rows run inside one DGX B200, on a two-level model with NVLink 5's 900 GB/s
per direction (published.md s7) at the A100 NVLink's measured 230/240 protocol efficiency (published.md s6.2)
and CX-7 NDR's 47 GB/s per NIC across nodes (published.md s6.2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipesim.calib.fit import Run
from pipesim.comm.base import CommModel
from pipesim.comm.factory import ClusterSpec, build_comm, server_cluster
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec, get_model

NEMO_JSON = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nemo-performance.json"

_NEMO_MODELS = {
    "GPT-3 175B": "gpt3-175b",
    "Llama 2 7B": "llama2-7b",
    "Llama 2 13B": "llama2-13b",
    "Llama 2 70B": "llama2-70b",
    "Llama 3 8B": "llama3-8b",
    "Llama 3 70B": "llama3-70b",
}


def _gpt(name: str, layers: int, hidden: int, heads: int, vocab: int = 51200, seq: int = 2048) -> ModelSpec:
    return ModelSpec(name, layers, hidden, heads, vocab, seq, 4 * hidden, heads, source="nemo-performance.md")


_NEMO_EXTRA = {"GPT-3 5B": _gpt("gpt3-5b", 24, 4096, 32), "GPT-3 20B": _gpt("gpt3-20b", 44, 6144, 48)}


def nemo_llama_flops(model: ModelSpec, gbs: int, seq: int) -> float:
    """NeMo's model FLOPs per step for the Llama family (nemo/utils/flops_formulas.py ``llama3``)."""
    h, L = model.hidden_size, model.num_layers
    g_a = model.num_kv_heads / model.num_attention_heads
    f_h = model.ffn_hidden_size / h
    return gbs * seq * L * h * h * (12 + 12 * g_a + 18 * f_h + 12 * seq / h + 6 * model.vocab_size / (L * h))


def megatron_gpt_flops(layers: int, hidden: int, vocab: int, batch: int, seq: int) -> float:
    """Megatron-LM's model FLOPs per step of a GPT (4h MLP, MHA): 72 B s L h^2 (1 + s/(6h) + V/(12 L h))."""
    return 72.0 * batch * seq * layers * hidden**2 * (1 + seq / (6 * hidden) + vocab / (12 * layers * hidden))


def _comm(gpu: str, gpus: int) -> CommModel:
    """The GPU's own server (pipesim.specs.server), which every command also defaults to."""
    return build_comm(server_cluster(get_gpu(gpu).server), gpus)


def nemo_runs(gpu: str, context_parallel: bool = False) -> tuple[list[Run], list[tuple[str, str]]]:
    """(runs, refused) for ``gpu`` (h100-sxm or b200): NeMo's newest pre-training rows (module docstring);
    ``refused`` lists (row id, reason) for the rows left out. The context-parallel rows (CP > 1, long
    sequences) are not part of the calibration: with ``context_parallel`` only they are returned, to validate
    the CP model against measurements it was not fitted to."""
    want = {"h100-sxm": "H100", "b200": "B200"}[gpu]
    rows: list[dict[str, Any]] = json.loads(NEMO_JSON.read_text())
    runs: list[Run] = []
    refused: list[tuple[str, str]] = []
    for r in rows:
        if want not in r["gpu"] or r["task"] != "pretrain" or not r["newest"]:
            continue
        rid = r["id"]
        if not r["usable"] or r["tp"] is None or r["pp"] is None:
            refused.append((rid, "incomplete layout in the source"))
            continue
        cp = int(r["cp"] or 1)
        if (cp > 1) != context_parallel:
            if cp > 1:
                refused.append((rid, f"context parallelism CP={cp} (validation only, not fitted: see below)"))
            continue
        if r["model"] in _NEMO_MODELS:
            model = get_model(_NEMO_MODELS[r["model"]])
        elif r["model"] in _NEMO_EXTRA:
            model = _NEMO_EXTRA[r["model"]]
        else:
            refused.append(
                (rid, f"{r['model']}: squared-ReLU Nemotron, no shape in this benchmark (not in the fit)")
            )
            continue
        seq = int(r["seq_length"])
        tp, pp, vp = int(r["tp"]), int(r["pp"]), int(r["vp"] or 1)
        gpus, gbs, mbs = int(r["gpus"]), int(r["gbs"]), int(r["mbs"] or 1)
        if r["step_time_s_derived"] is not None:
            step = float(r["step_time_s_derived"])
        else:
            step = nemo_llama_flops(model, gbs, seq) / (float(r["model_tflops_per_gpu"]) * 1e12 * gpus)
        layout = Layout(
            tp=tp, pp=pp, cp=cp, dp=gpus // (tp * pp * cp), vpp=vp, micro_batch_size=mbs, global_batch_size=gbs, seq_length=seq,
            sequence_parallel=tp > 1, distributed_optimizer=True, precision="fp8", attention="flash",
            schedule="interleaved-1f1b" if vp > 1 else "1f1b", tp_comm_overlap_forward=True,
            overlap_param_gather=True,
        )  # fmt: skip
        label = f"{rid} {r['model']} {gpus} GPUs tp{tp} pp{pp}{f' cp{cp}' if cp > 1 else ''} vp{vp} mbs{mbs} s{seq}"
        runs.append(Run(model, layout, _comm(gpu, gpus), step, label, str(r["model"])))
    return runs, refused


# Megatron-LM README H100 weak scaling (published.md s8): (size, heads, hidden, layers, TP, PP, DP, batch,
# TFLOP/s/GPU).
MEGATRON_H100 = (
    ("1.7B", 16, 2048, 24, 1, 1, 48, 192, 408.8),
    ("7.1B", 32, 4096, 30, 2, 1, 48, 192, 465.9),
    ("16B", 48, 6144, 32, 4, 1, 48, 192, 489.1),
    ("32B", 56, 7168, 48, 8, 1, 48, 192, 459.6),
    ("70B", 64, 8192, 84, 8, 2, 48, 384, 419.7),
    ("119B", 80, 10240, 92, 8, 4, 48, 768, 420.5),
    ("177B", 96, 12288, 96, 8, 6, 48, 1152, 432.8),
    ("314B", 128, 16384, 96, 8, 8, 48, 1536, 474.4),
    ("462B", 144, 18432, 112, 8, 16, 48, 3072, 459.9),
)
_MEG_VOCAB, _MEG_SEQ = 131072, 4096


def megatron_runs(comm: CommModel | None = None) -> list[Run]:
    """The nine Megatron-LM README H100 BF16 rows (module docstring) on the dgx-h100 topology (or ``comm``)."""
    runs = []
    for size, heads, hidden, layers, tp, pp, dp, batch, tflops in MEGATRON_H100:
        model = ModelSpec(
            f"megatron-gpt-{size.lower()}", layers, hidden, heads, _MEG_VOCAB, _MEG_SEQ, 4 * hidden, heads,
            tied_embeddings=False, source="Megatron-LM README (published.md s8)",
        )  # fmt: skip
        gpus = tp * pp * dp
        step = megatron_gpt_flops(layers, hidden, _MEG_VOCAB, batch, _MEG_SEQ) / (tflops * 1e12 * gpus)
        layout = Layout(
            tp=tp, pp=pp, dp=dp, micro_batch_size=1, global_batch_size=batch, sequence_parallel=tp > 1,
            distributed_optimizer=True, precision="bf16", attention="flash", tp_comm_overlap_forward=True,
            overlap_param_gather=True,
        )  # fmt: skip
        label = f"Megatron README {size} {gpus} GPUs tp{tp} pp{pp}"
        runs.append(
            Run(model, layout, comm or build_comm(ClusterSpec("dgx-h100"), gpus), step, label, model.name)
        )
    return runs
