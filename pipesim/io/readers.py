"""Reading user files into specs: Hugging Face ``config.json`` and model / GPU TOML.

Every problem raises :class:`InputError` naming the file (once) and the key (one line); every number must be
finite.

Hugging Face keys read (Llama / Mistral / Qwen style): ``hidden_size``, ``intermediate_size``,
``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads`` (default: the attention heads),
``vocab_size``, ``max_position_embeddings`` (or ``rope_scaling.original_max_position_embeddings`` when the
context was extended after pre-training), ``tie_word_embeddings``, ``hidden_act``, ``attention_bias`` /
``mlp_bias``. GPT-2 style: ``n_embd``, ``n_layer``, ``n_head``, ``n_positions``, ``n_inner`` (default 4 x n_embd),
``vocab_size``, ``activation_function``.

Model TOML: the :class:`pipesim.specs.model.ModelSpec` field names (``num_layers``, ``hidden_size``, ...), with
``ffn_hidden_size`` defaulting to 4 x hidden and ``num_kv_heads`` to the attention heads.

GPU TOML (units in the key names; GB = 1e9 bytes, GiB = 2^30 bytes, TFLOPS = 1e12 FLOP/s)::

    name = "my-gpu"
    memory_GB = 80              # or memory_GiB
    hbm_bandwidth_GBps = 2039
    tdp_W = 400                 # optional
    [peak_TFLOPS]               # dense; at least one of bf16, fp16, fp8, fp4, tf32, fp32
    bf16 = 312
    fp16 = 312

Or start from a preset and override some values (the rest, and the other precisions' peaks, are the
preset's)::

    base = "h100-sxm"
    name = "h100-sxm-600W"      # optional, default: the file's stem
    tdp_W = 600
    [peak_TFLOPS]
    fp8 = 1500

Either form may carry an ``[efficiency]`` table (the keys of :class:`pipesim.specs.efficiency.Efficiency`, e.g.
``gemm_max = 0.7``; missing keys from the base preset's calibrated profile; each value in its key's range,
:data:`pipesim.specs.efficiency.EFFICIENCY_RULES`, which an error states) and a ``[source]`` table naming
where each efficiency value comes from: what ``pipesim calibrate`` writes. A ``[server]`` table names the
server the GPU comes in, which every command's collectives default to (:mod:`pipesim.specs.server`; default:
the base preset's, or DGX A100's): ``topology = "dgx-h100"`` (a preset or TOML path), or the two-level
model's ``gpus_per_node``, ``intra_node_GBps`` and ``inter_node_GBps`` (per GPU per direction), and
``name`` / ``source`` (a table without ``topology`` is the two-level model, over the base's figures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from pipesim.errors import InputError
from pipesim.io.hf_config import load_hf_config, model_from_hf_dict
from pipesim.io.values import parse_toml, read_text, req_bool, req_int, req_name, req_num, req_str
from pipesim.specs.efficiency import EFFICIENCY_KEYS, Efficiency, efficiency_from_table
from pipesim.specs.gpu import PRECISIONS, GPUSpec, get_gpu
from pipesim.specs.model import ModelSpec, get_model
from pipesim.specs.server import FILE_DEFAULT_SERVER, ServerSpec

__all__ = [
    "load_hf_config",
    "model_from_hf_dict",
    "load_model_toml",
    "load_gpu_toml",
    "resolve_model",
    "resolve_gpu",
]


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    return parse_toml(read_text(path, what), str(path))


# The keys of a model table: ModelSpec's fields (its source is the file itself).
MODEL_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ModelSpec) if f.name != "source")


def load_model_toml(path: str | Path) -> ModelSpec:
    """Read a model TOML whose keys are :class:`ModelSpec` field names."""
    p = Path(path)
    return model_from_table(_read_toml(p, "model"), str(p), p.stem)


def model_from_table(
    data: Mapping[str, Any], src: str, default_name: str | None = None, prefix: str = ""
) -> ModelSpec:
    """A :class:`ModelSpec` from a TOML table of its field names (a model file, or a scenario's ``[model]``
    with ``prefix="model."``); ``name`` is required when ``default_name`` is None. Errors name ``src`` and
    the key."""
    unknown = [k for k in data if k not in MODEL_KEYS]
    if unknown:
        raise InputError(f"{src}: unknown key {prefix + unknown[0]!r}; valid keys: {', '.join(MODEL_KEYS)}")
    if default_name is None and "name" not in data:
        raise InputError(f"{src}: missing key {prefix + 'name'!r}")
    hidden = req_int(src, data, "hidden_size", prefix=prefix)
    heads = req_int(src, data, "num_attention_heads", prefix=prefix)
    # Read every key first: a bad key is named once, outside the ModelSpec check below.
    fields_ = dict(
        name=req_name(src, data, "name", default_name or "", prefix),
        num_layers=req_int(src, data, "num_layers", prefix=prefix),
        hidden_size=hidden,
        num_attention_heads=heads,
        vocab_size=req_int(src, data, "vocab_size", prefix=prefix),
        seq_length=req_int(src, data, "seq_length", prefix=prefix),
        ffn_hidden_size=req_int(src, data, "ffn_hidden_size", 4 * hidden, prefix),
        num_kv_heads=req_int(src, data, "num_kv_heads", heads, prefix),
        activation=req_str(src, data, "activation", "gelu", prefix),
        norm=req_str(src, data, "norm", "layernorm", prefix),
        linear_bias=req_bool(src, data, "linear_bias", True, prefix),
        tied_embeddings=req_bool(src, data, "tied_embeddings", True, prefix),
        learned_positions=req_bool(src, data, "learned_positions", True, prefix),
        dropout=req_bool(src, data, "dropout", True, prefix),
    )
    for f in fields(ModelSpec):  # the optional shape fields (MoE, MLA, attention variants): typed by default
        if f.name in fields_ or f.name == "source" or f.name not in data:
            continue
        fields_[f.name] = _optional_field(src, data, f.name, f.default, prefix)
    try:
        return ModelSpec(**fields_, source=src)  # type: ignore[arg-type]
    except InputError as exc:
        where = f"[{prefix.rstrip('.')}]: " if prefix else ""
        raise InputError(f"{src}: {where}{exc}") from None


def _optional_field(src: str, data: Mapping[str, Any], key: str, default: object, prefix: str) -> object:
    value = data[key]
    if isinstance(default, bool):
        return req_bool(src, data, key, default, prefix)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{src}: key {prefix + key!r} = {value!r} must be a non-negative integer")
        return value
    if key == "moe_capacity_factor":
        return req_num(src, data, key, prefix)
    return req_str(src, data, key, str(default), prefix)


_GPU_KEYS = (
    "name",
    "base",
    "memory_GB",
    "memory_GiB",
    "hbm_bandwidth_GBps",
    "tdp_W",
    "peak_TFLOPS",
    "source",
    "efficiency",
    "server",
)
_SERVER_KEYS = ("name", "topology", "gpus_per_node", "intra_node_GBps", "inter_node_GBps", "source")


def load_gpu_toml(path: str | Path) -> GPUSpec:
    """Read a GPU TOML (format in the module docstring) into a :class:`GPUSpec`."""
    p = Path(path)
    return gpu_from_table(_read_toml(p, "gpu"), str(p), p.stem)


def gpu_from_table(
    data: Mapping[str, Any], src: str, default_name: str, prefix: str = "", status: str = "user file"
) -> GPUSpec:
    """A :class:`GPUSpec` from a TOML table (a GPU file, or a scenario's ``[gpu]`` with ``prefix="gpu."``):
    memory in GB or GiB, HBM bandwidth in GB/s, dense peaks in TFLOP/s per precision, optional TDP; or
    ``base = "<preset>"`` with overrides. Errors name ``src`` and the key."""
    unknown = [k for k in data if k not in _GPU_KEYS]
    if unknown:
        raise InputError(f"{src}: unknown key {prefix + unknown[0]!r}; valid keys: {', '.join(_GPU_KEYS)}")
    if "memory_GB" in data and "memory_GiB" in data:
        raise InputError(f"{src}: give one of '{prefix}memory_GB' and '{prefix}memory_GiB', not both")
    if "base" in data:
        return _gpu_from_base(src, data, default_name, prefix)
    if "memory_GiB" in data:
        hbm = req_num(src, data, "memory_GiB", prefix) * 2**30
    else:
        hbm = req_num(src, data, "memory_GB", prefix) * 1e9
    peaks_raw = data.get("peak_TFLOPS")
    if peaks_raw is not None and not isinstance(peaks_raw, dict):
        raise InputError(
            f"{src}: key '{prefix}peak_TFLOPS' = {peaks_raw!r} must be a table of dense TFLOP/s per precision, "
            f"e.g. [peak_TFLOPS] bf16 = 989 (precisions: {', '.join(PRECISIONS)})"
        )
    if not peaks_raw:
        raise InputError(
            f"{src}: missing table '{prefix}peak_TFLOPS' (dense TFLOP/s per precision: {', '.join(PRECISIONS)})"
        )
    peaks = _peaks(src, peaks_raw, prefix)
    tdp = req_num(src, data, "tdp_W", prefix) if "tdp_W" in data else None
    # Read every key first: a bad key is named once, outside the GPUSpec check below.
    name = req_name(src, data, "name", default_name, prefix)
    hbm_Bps = req_num(src, data, "hbm_bandwidth_GBps", prefix) * 1e9
    source, eff_sources = _sources(src, data, prefix)
    server = _server(src, data, FILE_DEFAULT_SERVER, prefix)
    efficiency = _efficiency(src, data, None, eff_sources, prefix)
    try:
        return GPUSpec(
            name=name,
            peak_flops=peaks,
            hbm_bytes=hbm,
            hbm_Bps=hbm_Bps,
            tdp_w=tdp,
            source=source or src,
            status=status,
            efficiency=efficiency,
            server=server,
        )
    except InputError as exc:
        where = f"[{prefix.rstrip('.')}]: " if prefix else ""
        raise InputError(f"{src}: {where}{exc}") from None


def _server(src: str, data: Mapping[str, Any], base: ServerSpec, prefix: str = "") -> ServerSpec:
    """The file's ``[server]`` table over ``base`` (the preset's server, or DGX A100's): ``topology`` (a
    preset name or TOML path; its GPUs per server unless ``gpus_per_node`` agrees), ``gpus_per_node``,
    ``intra_node_GBps`` and ``inter_node_GBps`` (per GPU per direction, GB/s = 1e9 B/s), ``name``, ``source``."""
    raw = data.get("server")
    if raw is None:
        return base
    where = f"{prefix}server"
    if not isinstance(raw, dict):
        raise InputError(f"{src}: key {where!r} must be a table of {', '.join(_SERVER_KEYS)}")
    unknown = [k for k in raw if k not in _SERVER_KEYS]
    if unknown:
        raise InputError(f"{src}: unknown key '{where}.{unknown[0]}'; valid keys: {', '.join(_SERVER_KEYS)}")
    sub = f"{where}."
    topology = req_str(src, raw, "topology", "", sub) or None
    gpus = base.gpus_per_node
    if topology is not None:
        from pipesim.comm.factory import topology_gpus_per_node
        from topologies.errors import TopologyError

        try:
            gpus = topology_gpus_per_node(topology)
        except (InputError, TopologyError) as exc:
            raise InputError(f"{src}: key '{sub}topology': {exc}") from None
        if "gpus_per_node" in raw and req_int(src, raw, "gpus_per_node", None, sub) != gpus:
            raise InputError(
                f"{src}: key '{sub}gpus_per_node' = {raw['gpus_per_node']} contradicts topology {topology} "
                f"({gpus} GPUs per server)"
            )
    gpus = req_int(src, raw, "gpus_per_node", gpus, sub)
    intra = req_num(src, raw, "intra_node_GBps", sub) * 1e9 if "intra_node_GBps" in raw else base.intra_Bps
    inter = req_num(src, raw, "inter_node_GBps", sub) * 1e9 if "inter_node_GBps" in raw else base.inter_Bps
    return ServerSpec(
        req_str(src, raw, "name", f"server of {src}", sub),
        gpus,
        intra,
        inter,
        topology,
        req_str(src, raw, "source", f"{src} [{where}] over {base.name}", sub),
    )


def _sources(src: str, data: Mapping[str, Any], prefix: str = "") -> tuple[str, dict[str, Any] | None]:
    """The file's ``source``: a string (where the GPU's numbers come from), or a table of efficiency key ->
    source text (what ``pipesim calibrate`` writes)."""
    raw = data.get("source")
    if raw is None or isinstance(raw, str):
        return raw or "", None
    if isinstance(raw, dict):
        return "", raw
    raise InputError(f"{src}: key '{prefix}source' must be a string or a table of strings")


def _efficiency(
    src: str,
    data: Mapping[str, Any],
    base: Efficiency | None,
    sources: Mapping[str, Any] | None,
    prefix: str = "",
) -> Efficiency | None:
    """The ``[efficiency]`` table over ``base`` (the preset's profile), or ``base`` when there is none."""
    raw = data.get("efficiency")
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise InputError(
            f"{src}: key '{prefix}efficiency' must be a table (keys: {', '.join(EFFICIENCY_KEYS)})"
        )
    return efficiency_from_table(raw, src, base, sources, prefix)


def _peaks(src: str, raw: object, prefix: str = "") -> dict[str, float]:
    if not isinstance(raw, dict):
        raise InputError(f"{src}: key '{prefix}peak_TFLOPS' must be a table of TFLOP/s per precision")
    peaks: dict[str, float] = {}
    for prec in raw:
        if prec not in PRECISIONS:
            raise InputError(
                f"{src}: key '{prefix}peak_TFLOPS.{prec}' is not a precision; valid: {', '.join(PRECISIONS)}"
            )
        peaks[prec] = req_num(src, raw, prec, f"{prefix}peak_TFLOPS.") * 1e12
    return peaks


def _gpu_from_base(src: str, data: Mapping[str, Any], stem: str, prefix: str = "") -> GPUSpec:
    """A GPU TOML with ``base = "<preset>"``: the preset with the file's keys overriding it."""
    base_name = req_str(src, data, "base", "", prefix)
    try:
        base = get_gpu(base_name)
    except InputError as exc:
        raise InputError(f"{src}: key '{prefix}base': {exc}") from None
    peaks = dict(base.peak_flops)
    peaks.update(_peaks(src, data.get("peak_TFLOPS", {}), prefix))
    hbm = base.hbm_bytes
    if "memory_GiB" in data:
        hbm = req_num(src, data, "memory_GiB", prefix) * 2**30
    elif "memory_GB" in data:
        hbm = req_num(src, data, "memory_GB", prefix) * 1e9
    bw = (
        req_num(src, data, "hbm_bandwidth_GBps", prefix) * 1e9
        if "hbm_bandwidth_GBps" in data
        else base.hbm_Bps
    )
    tdp = req_num(src, data, "tdp_W", prefix) if "tdp_W" in data else base.tdp_w
    changed = [
        k for k in ("memory_GB", "memory_GiB", "hbm_bandwidth_GBps", "tdp_W", "peak_TFLOPS") if k in data
    ]
    source, eff_sources = _sources(src, data, prefix)
    server = _server(src, data, base.server, prefix)
    efficiency = _efficiency(src, data, base.efficiency, eff_sources, prefix)
    name = req_name(src, data, "name", stem, prefix)
    try:
        return GPUSpec(
            name=name,
            peak_flops=peaks,
            hbm_bytes=hbm,
            hbm_Bps=bw,
            tdp_w=tdp,
            source=source or f"{src} over preset {base.name} ({base.source})",
            status=f"user file over preset {base.name}",
            notes=f"overridden: {', '.join(changed) or 'nothing'}",
            efficiency=efficiency,
            server=server,
        )
    except InputError as exc:
        where = f"[{prefix.rstrip('.')}]: " if prefix else ""
        raise InputError(f"{src}: {where}{exc}") from None


def _looks_like_path(arg: str) -> bool:
    return arg.endswith((".json", ".toml")) or "/" in arg or Path(arg).is_file()


def resolve_model(arg: str) -> ModelSpec:
    """A preset name, a Hugging Face ``config.json`` (any ``.json``) or a model ``.toml``."""
    if _looks_like_path(arg):
        if arg.endswith(".toml"):
            return load_model_toml(arg)
        return load_hf_config(arg)
    return get_model(arg)


def resolve_gpu(arg: str) -> GPUSpec:
    """A preset name or a GPU ``.toml`` file."""
    if _looks_like_path(arg):
        return load_gpu_toml(arg)
    return get_gpu(arg)
