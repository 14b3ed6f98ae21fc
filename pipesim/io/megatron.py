"""A layout as Megatron-LM command-line arguments (``pretrain_gpt.py``).

Argument names as Megatron-LM spells them (megatron/training/arguments.py): ``--tensor-model-parallel-size``,
``--pipeline-model-parallel-size``, ``--num-layers-per-virtual-pipeline-stage`` (layers per model chunk: the
interleaved schedule with num_layers / (pp x that) chunks per rank), ``--micro-batch-size``,
``--global-batch-size``, ``--seq-length``, ``--sequence-parallel``, ``--recompute-granularity``
(full | selective) with ``--recompute-method uniform --recompute-num-layers 1`` for full recomputation of
every layer, ``--use-distributed-optimizer``, ``--overlap-grad-reduce``, ``--bf16`` / ``--fp16``,
``--fp8-format hybrid`` (Transformer Engine), ``--use-flash-attn``; model shape: ``--num-layers``,
``--hidden-size``, ``--ffn-hidden-size``, ``--num-attention-heads``, ``--group-query-attention
--num-query-groups``, ``--swiglu``, ``--normalization RMSNorm``, ``--disable-bias-linear``,
``--position-embedding-type rope``, ``--untie-embeddings-and-output-weights``, ``--max-position-embeddings``.

Data parallelism is implied (world size / (tp x pp)), as in Megatron-LM. Schedules Megatron-LM does not ship
(GPipe, the zero-bubble family) are noted in a comment line instead of an argument.
"""

from __future__ import annotations

from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = ["megatron_args", "format_megatron_args"]

# Schedules Megatron-LM runs: 1F1B when pp > 1 (its default) and interleaved 1F1B with virtual stages.
_NATIVE = ("1f1b", "interleaved-1f1b")


_LISTED_UP_TO = 256  # layers whose MoE pattern is written out in full; longer ones as a list expression


def _moe_pattern(model: ModelSpec) -> str:
    """Megatron-LM's ``--moe-layer-freq`` list (1 = MoE layer), as a Python list expression it evaluates:
    written out for up to 256 layers, else ``[0]*k+([0]*(f-1)+[1])*q+[0]*r`` (k leading dense layers, then
    every f-th layer MoE), whose length does not grow with the layer count."""
    n, k, f = model.num_layers, model.first_k_dense_layers, model.moe_layer_freq
    if n <= _LISTED_UP_TO:
        return "[" + ",".join("1" if model.layer_kind(i).moe else "0" for i in range(n)) + "]"
    q, r = divmod(n - k, f)
    period = "[1]" if f == 1 else f"[0]*{f - 1}+[1]"
    parts = [f"[0]*{k}"] if k else []
    parts.append(f"({period})*{q}")
    if r:
        parts.append(f"[0]*{r}")
    return "+".join(parts)


def megatron_args(model: ModelSpec, layout: Layout) -> list[tuple[str, str | None]]:
    """(flag, value or None) pairs that configure ``layout`` of ``model`` in Megatron-LM."""
    seq = layout.seq(model)
    out: list[tuple[str, str | None]] = [
        ("--num-layers", str(model.num_layers)),
        ("--hidden-size", str(model.hidden_size)),
        ("--ffn-hidden-size", str(model.ffn_hidden_size)),
        ("--num-attention-heads", str(model.num_attention_heads)),
    ]
    if model.num_kv_heads != model.num_attention_heads:
        out += [("--group-query-attention", None), ("--num-query-groups", str(model.num_kv_heads))]
    if model.gated_mlp:
        out.append(("--swiglu", None))
    if model.norm == "rmsnorm":
        out.append(("--normalization", "RMSNorm"))
    if not model.linear_bias:
        out.append(("--disable-bias-linear", None))
    if not model.learned_positions:
        out.append(("--position-embedding-type", "rope"))
    if not model.tied_embeddings:
        out.append(("--untie-embeddings-and-output-weights", None))
    out += [
        ("--seq-length", str(seq)),
        ("--max-position-embeddings", str(seq)),
        ("--tensor-model-parallel-size", str(layout.tp)),
        ("--pipeline-model-parallel-size", str(layout.pp)),
    ]
    if layout.schedule == "interleaved-1f1b" and layout.vpp > 1:
        out.append(
            ("--num-layers-per-virtual-pipeline-stage", str(model.num_layers // (layout.pp * layout.vpp)))
        )
    out += [
        ("--micro-batch-size", str(layout.micro_batch_size)),
        ("--global-batch-size", str(layout.global_batch_size)),
    ]
    if layout.sequence_parallel:
        out.append(("--sequence-parallel", None))
    if layout.recompute == "full":
        out += [
            ("--recompute-granularity", "full"),
            ("--recompute-method", "uniform"),
            ("--recompute-num-layers", "1"),
        ]
    elif layout.recompute == "selective":
        out.append(("--recompute-granularity", "selective"))
    if layout.distributed_optimizer:
        out.append(("--use-distributed-optimizer", None))
    if layout.dp_overlap and layout.dp > 1:
        out.append(("--overlap-grad-reduce", None))
    if layout.vpp > 1 and not layout.p2p_overlapped:  # Megatron-Core overlaps interleaved p2p by default
        out.append(("--no-overlap-p2p-communication", None))
    if layout.cuda_graphs:
        out.append(("--cuda-graph-impl", "transformer_engine"))
    if layout.precision == "fp16":
        out.append(("--fp16", None))
    else:
        out.append(("--bf16", None))
        if layout.precision == "fp8":
            out.append(("--fp8-format", "hybrid"))
        elif layout.precision == "fp4":  # NVFP4 (--fp4-recipe nvfp4 is the default)
            out.append(("--fp4-format", "e2m1"))
    if layout.attention == "flash":
        out.append(("--use-flash-attn", None))
    out += _moe_mla_args(model, layout)
    return out


def _moe_mla_args(model: ModelSpec, layout: Layout) -> list[tuple[str, str | None]]:
    """Megatron-Core's arguments for experts, MLA, decoupled heads, QK-norm, MTP, CP and EP."""
    out: list[tuple[str, str | None]] = []
    if model.kv_channels:
        out.append(("--kv-channels", str(model.kv_channels)))
    if model.qk_norm:
        out.append(("--qk-layernorm", None))
    if model.activation == "squared_relu":
        out.append(("--squared-relu", None))
    if model.mla:
        out += [("--multi-latent-attention", None), ("--kv-lora-rank", str(model.kv_lora_rank))]
        if model.q_lora_rank:
            out.append(("--q-lora-rank", str(model.q_lora_rank)))
        out += [
            ("--qk-head-dim", str(model.qk_nope_head_dim)),
            ("--qk-pos-emb-head-dim", str(model.qk_rope_head_dim)),
            ("--v-head-dim", str(model.v_head_dim)),
        ]
    if model.moe:
        out += [
            ("--num-experts", str(model.num_experts)),
            ("--moe-router-topk", str(model.moe_top_k)),
            ("--moe-ffn-hidden-size", str(model.expert_ffn)),
            ("--moe-grouped-gemm", None),
        ]
        out.append(("--moe-token-dispatcher-type", "alltoall"))
        if model.moe_router_num_groups:  # group-limited routing
            out += [
                ("--moe-router-num-groups", str(model.moe_router_num_groups)),
                ("--moe-router-group-topk", str(model.moe_router_group_topk)),
            ]
        if model.shared_expert_ffn_hidden_size:
            out.append(("--moe-shared-expert-intermediate-size", str(model.shared_expert_ffn_hidden_size)))
        if model.first_k_dense_layers or model.moe_layer_freq > 1:
            out.append(("--moe-layer-freq", f"'({_moe_pattern(model)})'"))
        if model.moe_capacity_factor is not None:
            out += [
                ("--moe-expert-capacity-factor", f"{model.moe_capacity_factor:g}"),
                ("--moe-token-drop-policy", "probs"),
            ]
    if model.mtp_layers:
        out.append(("--mtp-num-layers", str(model.mtp_layers)))
    if layout.cp > 1:
        out += [
            ("--context-parallel-size", str(layout.cp)),
            ("--cp-comm-type", "p2p" if layout.cp_comm == "ring" else "allgather"),
        ]
    if layout.ep > 1:
        out.append(("--expert-model-parallel-size", str(layout.ep)))
    if model.moe:
        out.append(("--expert-tensor-parallel-size", str(layout.etp)))
    return out


def format_megatron_args(model: ModelSpec, layout: Layout) -> str:
    """The arguments as shell text, one flag per line with continuation backslashes; a leading comment
    notes the data-parallel size and, for schedules Megatron-LM does not ship, the schedule to use."""
    args = megatron_args(model, layout)
    cp = f" x cp {layout.cp}" if layout.cp > 1 else ""
    lines = [f"# world size {layout.num_gpus} = tp {layout.tp}{cp} x pp {layout.pp} x dp {layout.dp}"]
    if (
        model.sliding_window
        or model.activation == "geglu"
        or model.parallel_block
        or model.norms_per_layer != 2
    ):
        lines.append(
            "# model features without a Megatron-LM argument here (sliding window, GeGLU, parallel block or "
            "extra norms): configure them in the model code"
        )
    if layout.pp > 1 and layout.schedule not in _NATIVE:
        lines.append(
            f"# schedule {layout.schedule}: not a Megatron-LM built-in (it runs 1F1B / interleaved 1F1B); "
            "use an implementation of it"
        )
    if layout.zero_stage >= 3:
        how = {
            "full": "FSDP, full sharding",
            "hybrid": f"hybrid FSDP, shard groups of {layout.fsdp_shard_size}",
        }
        lines.append(
            f"# weights sharded ({how.get(layout.fsdp, 'DeepSpeed ZeRO-3')}): not expressed by these arguments; "
            "run the layout with a sharded data-parallel implementation"
        )
    body = [f"{flag} {value}" if value is not None else flag for flag, value in args]
    lines += [f"  {item} \\" for item in body[:-1]] + [f"  {body[-1]}"]
    return "\n".join(lines)
