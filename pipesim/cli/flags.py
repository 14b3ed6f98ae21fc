"""The declaration of every pipesim flag, once: keyword -> (click names, click attributes). The option groups
of :mod:`pipesim.cli.options` pick from this table; no command declares a flag of its own."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import click

from pipesim.figures import PLOTLYJS_MODES
from pipesim.sim.budget import MAX_ACTIONS, MAX_BARS, MAX_GPUS, MAX_PLAN_VPP, MAX_TOP_K
from pipesim.sim.energy import DEFAULT_NODE_OVERHEAD_W, DEFAULT_PUE
from pipesim.specs.gpu import gpu_names
from pipesim.specs.layout import ATTENTION, FP8_RECIPES, FSDP, RECOMPUTE, TRAIN_PRECISIONS, Layout
from pipesim.specs.model import model_names
from schedules import schedule_names

__all__ = ["FLAGS", "COLLECTIVE_OPS", "ALGORITHMS", "presets"]

GIB = 2**30
COLLECTIVE_OPS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "broadcast", "send-recv")
ALGORITHMS = ("auto", "ring", "tree", "hierarchical", "nvls", "direct")
_PATH = click.Path(dir_okay=False, allow_dash=True)
# The layout flags' defaults are :class:`Layout`'s (declared there, once); the switches that can only turn a
# field on (``--sequence-parallel``, ...) stand for fields whose default is off (tests/cli/test_layout_flags.py).
_LAYOUT: dict[str, Any] = {f.name: f.default for f in fields(Layout)}


class FiniteFloat(click.ParamType):
    """A float flag that refuses ``inf``, ``nan`` and overflowing literals (``1e400``), naming the flag."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FLOAT = FiniteFloat()


def _d(*decls: str, **attrs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return decls, attrs


def _set_wide(ctx: click.Context, value: bool) -> None:
    """``--wide``: every console of this command prints tables whole (see :func:`pipesim.cli.render.console`)."""
    if value:
        ctx.meta["pipesim.wide"] = True


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--config``: the file's values become the command's defaults (:mod:`pipesim.cli.config`)."""
    from pipesim.cli.config import load_config

    load_config(ctx, param, value)


def presets(kind: str, listed: bool = False) -> Any:
    """Shell completion of ``kind`` preset names (:func:`pipesim.cli.complete.complete`), imported when asked."""

    def callback(ctx: click.Context, param: click.Parameter, incomplete: str) -> Any:
        from pipesim.cli.complete import complete

        return complete(kind, listed)(ctx, param, incomplete)

    return callback


FLAGS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    # --- model and GPU
    "model_arg": _d("--model", "model_arg", default=None, metavar="NAME|PATH", shell_complete=presets("model"),
                    help=f"Model preset ({', '.join(model_names())}) or a Hugging Face config.json / model .toml."),
    "gpu_arg": _d("--gpu", "gpu_arg", default="a100-80gb", show_default=True, metavar="NAME|PATH",
                  shell_complete=presets("gpu"),
                  help=f"GPU preset ({', '.join(gpu_names())}) or a GPU .toml."),
    # --- layout (Megatron-LM argument names)
    "pp": _d("--pp", "--pipeline-model-parallel-size", "pp", type=int, default=_LAYOUT["pp"], show_default=True,
             help="Pipeline-parallel size (ranks)."),
    "vpp": _d("--vpp", type=int, default=_LAYOUT["vpp"], show_default=True,
              help="Model chunks per pipeline rank (interleaved schedules)."),
    "layers_per_virtual_stage": _d("--num-layers-per-virtual-pipeline-stage", "layers_per_virtual_stage",
                                   type=click.IntRange(min=1), default=None,
                                   help="Megatron-LM's way to give --vpp: layers per model chunk, so vpp = layers / "
                                   "(pp x this)."),
    "tp": _d("--tp", "--tensor-model-parallel-size", "tp", type=int, default=_LAYOUT["tp"], show_default=True, help="Tensor-parallel size."),
    "dp": _d("--dp", type=int, default=None,
             help="Data-parallel size [default: GPUs / (tp x cp x pp), GPUs = --gpus or --nodes x GPUs per server; "
             "else 1]."),
    "cp": _d("--cp", "--context-parallel-size", "cp", type=int, default=_LAYOUT["cp"], show_default=True,
             help="Context-parallel size (2 x cp causal chunks per sequence)."),
    "cp_comm": _d("--cp-comm", default=_LAYOUT["cp_comm"], show_default=True,
                  help="Context-parallel key/value exchange: ring (overlapped with attention) or all-gather (Llama 3)."),
    "ep": _d("--ep", "--expert-model-parallel-size", "ep", type=int, default=_LAYOUT["ep"], show_default=True,
             help="Expert-parallel size (Megatron-LM --expert-model-parallel-size)."),
    "etp": _d("--etp", "--expert-tensor-parallel-size", "etp", type=int, default=_LAYOUT["etp"], show_default=True,
              help="Expert-tensor-parallel size (each expert's width split over etp GPUs)."),
    "moe_imbalance": _d("--moe-imbalance", type=FLOAT, default=_LAYOUT["moe_imbalance"], show_default=True,
                        help="Tokens of the busiest expert-parallel rank over the balanced share (1.0 = balanced)."),
    "space_cp": _d("--cp", "space_cp", default=None,
                  help="Only these context-parallel sizes (comma list) [default: 1 and powers of two leaving "
                  ">= 4096 tokens per GPU]."),
    "space_ep": _d("--ep", "space_ep", default=None,
                  help="Only these expert-parallel sizes (comma list) [default: the divisors of the experts]."),
    "space_etp": _d("--etp", "space_etp", default=None,
                   help="Only these expert-tensor-parallel sizes (comma list) [default: 1 and tp]."),
    "micro_batch_size": _d("--micro-batch-size", type=int, default=_LAYOUT["micro_batch_size"], show_default=True,
                           help="Sequences per microbatch."),
    "global_batch_size": _d("--global-batch-size", type=int, default=None,
                            help="Sequences per optimizer step (required by simulate and plan; compare and "
                            "gantt --model: micro-batch x dp x -m)."),
    "seq_length": _d("--seq-length", type=int, default=_LAYOUT["seq_length"], help="Sequence length [default: the model's]."),
    "sequence_parallel": _d("--sequence-parallel", is_flag=True,
                            help="Megatron sequence parallelism (needs tp > 1)."),
    "recompute": _d("--recompute", "--recompute-granularity", "recompute", default=_LAYOUT["recompute"], show_default=True,
                    help=f"Activation recomputation: {', '.join(RECOMPUTE)}."),
    "distributed_optimizer": _d("--distributed-optimizer", "--use-distributed-optimizer", "distributed_optimizer",
                                is_flag=True,
                                help="Shard optimizer state over dp (ZeRO-1)."),
    "zero_stage": _d("--zero-stage", type=int, default=_LAYOUT["zero_stage"], show_default=True,
                     help="ZeRO stage: 1 = --distributed-optimizer, 2 also shards gradients, 3 also weights "
                     "(DeepSpeed ZeRO-3: each layer's weights gathered before its forward, recomputed forward "
                     "and backward, prefetched one layer ahead; the gradients reduce-scattered in the backward)."),
    "fsdp": _d("--fsdp", default=_LAYOUT["fsdp"], show_default=True,
               help=f"PyTorch FSDP parameter sharding: {', '.join(FSDP)} (full = ZeRO-3 over dp x cp; hybrid = "
               "HSDP, shard inside --fsdp-shard-size GPUs, replicate across). Gathers prefetched one layer "
               "ahead; what compute cannot hide is reported as FSDP communication."),
    "fsdp_shard_size": _d("--fsdp-shard-size", type=int, default=_LAYOUT["fsdp_shard_size"],
                          help="GPUs per shard group with --fsdp hybrid (divides dp x cp)."),
    "reshard_after_forward": _d("--reshard-after-forward/--no-reshard-after-forward", default=_LAYOUT["reshard_after_forward"],
                                show_default=True,
                                help="Free gathered weights after each layer's forward (re-gathered in the "
                                "backward); off keeps them gathered until the backward (more memory)."),
    "precision": _d("--precision", default=_LAYOUT["precision"], show_default=True,
                    help=f"GEMM precision: {', '.join(TRAIN_PRECISIONS)} (fp4: NVFP4, Blackwell only; roofline also tf32, fp32, and a comma "
                    "list such as bf16,fp8 to compare them)."),
    "attention": _d("--attention", default=_LAYOUT["attention"], show_default=True,
                    help=f"Attention kernels: {', '.join(ATTENTION)} (unfused: scores materialised, as in "
                    "Megatron-LM 2021-22)."),
    "dp_overlap": _d("--dp-overlap/--no-dp-overlap", default=_LAYOUT["dp_overlap"], show_default=True,
                     help="Overlap gradient reduction with the last backwards."),
    "tp_comm_overlap": _d("--tp-comm-overlap/--no-tp-comm-overlap", default=_LAYOUT["tp_comm_overlap"], show_default=True,
                          help="Overlap backward TP collectives with weight-gradient GEMMs (Megatron's async "
                          "TP all-reduce)."),
    "tp_comm_overlap_forward": _d("--tp-comm-overlap-forward", is_flag=True,
                                  help="Overlap the forward TP collectives with their GEMMs too (Megatron-LM "
                                  "--tp-comm-overlap, userbuffers), hidden up to the GPU profile's tp_overlap."),
    "overlap_p2p_comm": _d("--overlap-p2p-comm/--no-overlap-p2p-comm", default=_LAYOUT["overlap_p2p_comm"],
                           help="Pipeline sends overlap compute, or each send holds its sender until it "
                           "completes (Megatron-LM's waited isend/irecv; SC21's 2021 code) [default: as "
                           "Megatron-Core: overlapped with interleaved-1f1b, blocking with 1f1b; other "
                           "schedules overlapped]."),
    "cuda_graphs": _d("--cuda-graphs/--no-cuda-graphs", default=_LAYOUT["cuda_graphs"], show_default=True,
                      help="Capture each layer's passes as CUDA graphs: the host launches one graph, not every "
                      "kernel (without, a pass lasts at least its kernels x the GPU profile's launch_s; "
                      "Megatron-Core's default is off)."),
    "overlap_param_gather": _d("--overlap-param-gather", is_flag=True,
                               help="With the distributed optimizer, overlap the weight all-gather with the next "
                               "forward (Megatron-LM --overlap-param-gather)."),
    "fp8_recipe": _d("--fp8-recipe", default=_LAYOUT["fp8_recipe"], show_default=True,
                     help=f"fp8 scaling recipe (with --precision fp8): {', '.join(FP8_RECIPES)}."),
    "uneven_layers": _d("--uneven-layers", is_flag=True, help="Allow pp (x vpp) not dividing the layer count."),
    "schedule": _d("--schedule", default=None, shell_complete=presets("schedule"),
                   help="Pipeline schedule [default: interleaved-1f1b if vpp > 1 else 1f1b]. Known: "
                   f"{', '.join(schedule_names())}."),
    "schedules": _d("--schedules", default=None, shell_complete=presets("schedule", listed=True),
                    help="Comma list of schedules [default: compare and gantt gpipe,1f1b,interleaved-1f1b; plan "
                    "all but zb-v-half and zb-v-min, whose memory-capped orders its estimate cannot track yet]. "
                    f"Known: {', '.join(schedule_names())}."),
    # --- cluster
    "gpus": _d("--gpus", "-g", type=click.IntRange(min=1), default=None,
               help="Total GPUs (simulate, compare: checked against dp x tp x pp; plan: instead of --nodes; "
               "collective: the group, ranks 0..G-1 [default: all])."),
    "gpus_per_node": _d("--gpus-per-node", type=click.IntRange(min=1), default=None,
                        help="GPUs per node of the two-level model [default: the GPU's server's, e.g. 8; "
                        "`pipesim gpu show` names it]."),
    "intra_node_gbps": _d("--intra-node-GBps", "intra_node_gbps", type=FLOAT, default=None,
                          help="Per-GPU bandwidth inside a node of the two-level model, GB/s = 1e9 B/s per "
                          "direction [default: the GPU's server's: 240 DGX A100, 431 DGX H100, 862 DGX B200]."),
    "inter_node_gbps": _d("--inter-node-GBps", "inter_node_gbps", type=FLOAT, default=None,
                          help="Per-GPU bandwidth across nodes of the two-level model, GB/s per direction "
                          "[default: the GPU's server's: 24 = one HDR NIC per GPU on A100, 47 = one NDR NIC "
                          "on H100 and later]."),
    "topology": _d("--topology", "-t", default=None, metavar="NAME|FILE.toml", shell_complete=presets("topology"),
                   help="Time every collective on this cluster topology (preset or TOML; see `pipesim topo "
                   "list`) instead of the two-level bandwidth model of the --*-GBps and --gpus-per-node flags "
                   "[default: the GPU's server: dgx-h100 for h100-sxm and h200, nvl72 for gb200, dgx1-v100 for "
                   "v100, pcie-8gpu-nvbridge for h100-pcie; the two-level model for A100, B200 and MI300X, and "
                   "whenever a two-level flag is given]."),
    "nodes": _d("--nodes", type=int, default=None,
                help="Servers of the cluster (racks for nvl72) [default: just enough for the layout; topo and "
                "collective: 1]."),
    "rank_order": _d("--rank-order", default="tp-dp-pp", show_default=True,
                     help="How the (tp, dp, pp) grid maps onto GPUs, fastest-varying first (Megatron-LM: "
                     "tp-dp-pp); rank g runs on GPU g, so e.g. dp-tp-pp spreads TP groups across servers."),
    "fabric": _d("--fabric", type=click.Choice(["rail", "fat-tree"]), default=None,
                 help="Override the fabric kind."),
    "oversubscription": _d("--oversubscription", type=FLOAT, default=None,
                           help="Leaf down:up ratio (1 = full bisection)."),
    # --- energy and cost
    "tokens": _d("--tokens", default=None, metavar="N",
                 help="Train on N tokens (2T, 300B, 1.5e12): report the whole run's time, GPU-hours, MWh and "
                 "cost."),
    "price_per_gpu_hour": _d("--price-per-gpu-hour", type=FLOAT, default=None,
                             help="Money per GPU-hour; cost = GPU-hours x price."),
    "pue": _d("--pue", type=FLOAT, default=DEFAULT_PUE, show_default=True,
              help="Power usage effectiveness, facility / IT power (>= 1; assumption by default)."),
    "node_overhead_w": _d("--node-overhead-W", "node_overhead_w", type=FLOAT, default=DEFAULT_NODE_OVERHEAD_W,
                          show_default=True,
                          help="Watts per node besides the GPUs (CPUs, NICs, switches, fans; assumption by "
                          "default)."),
    # --- compare's synthetic scenario
    "microbatches": _d("--microbatches", "-m", type=int, default=8, show_default=True,
                       help="Microbatches per step."),
    "forward_time": _d("--forward-time", type=FLOAT, default=1.0, show_default=True,
                       help="ms per microbatch, whole stage."),
    "backward_time": _d("--backward-time", type=FLOAT, default=2.0, show_default=True,
                        help="ms per microbatch, whole stage, full backward."),
    "weight_time": _d("--weight-time", type=FLOAT, default=None,
                      help="ms per microbatch, whole stage: the weight-gradient part W of the full backward, so "
                      "I = B - W (split-backward schedules only). [default: half of --backward-time]"),
    "memory_limit": _d("--memory-limit", type=FLOAT, default=None,
                       help="Activation cap for the zb-1p/zb-2p and zb-v-half/zb-v-min orders, in microbatches of "
                       "one stage per rank (>= 1). [default: pp for zb-1p, 2*pp for zb-2p, (pp+2)//2 for "
                       "zb-v-half, (pp+4)//3 for zb-v-min]"),
    "p2p_time": _d("--p2p-time", type=FLOAT, default=0.05, show_default=True,
                   help="ms per transfer between ranks."),
    "activation_bytes": _d("--activation-bytes", type=FLOAT, default=float(GIB), show_default=True,
                           help="Activation bytes per microbatch per whole stage."),
    "dp_time": _d("--dp-time", type=FLOAT, default=0.0, show_default=True,
                  help="ms to reduce a whole stage's gradients over data parallelism (0: no DP). With "
                  "--dp-overlap (the default) each bucket starts as soon as its gradients exist, during the "
                  "stage's last B or W."),
    "dp_buckets": _d("--dp-buckets", type=int, default=4, show_default=True,
                     help="Gradient buckets per stage for --dp-time."),
    "fb_time": _d("--fb-time", type=FLOAT, default=None,
                  help="ms per overlapped F&B pair of a whole stage (DualPipe's notation: the forward of one "
                  "microbatch and the backward of another, each hiding the other's communication; dualpipe-v "
                  "runs its pairs as one span). [default: no overlap, the pair's F then B]"),
    "optimizer": _d("--optimizer", type=click.Choice(("sync", "post-validation")), default="sync",
                    show_default=True,
                    help="sync: a global barrier after each iteration; step and bubble of one step from t = 0. "
                    "post-validation: the ZB paper's optimizer step without that barrier (its Section 4): the "
                    "next iteration's warm-up overlaps this one's tail, each rank's DP reduction and optimizer "
                    "step run between its own iterations; step = steady-state period "
                    "(T(N) - T(1))/(N - 1) of N = 4 back-to-back iterations."),
    "weight_stash": _d("--weight-stash", type=FLOAT, default=32 / 34, show_default=True,
                       help="Share of a microbatch's activations that W still needs after I (I frees the rest, W "
                       "the stash); ZB paper Table 1: 32h/(34h + 5as), 32/34 with flash attention."),
    "iterations": _d("--iterations", type=int, default=None,
                     help="Consecutive iterations to draw [default: 1 under --optimizer sync, 4 under "
                     "post-validation]."),
    "schedule_files": _d("--schedule-file", "schedule_files", multiple=True, type=_PATH,
                         help="A PyTorch per-rank schedule CSV to simulate (repeatable)."),
    # --- plan's search space: lists where simulate takes one value
    "space_tp": _d("--tp", "--tensor-model-parallel-size", "space_tp", default=None, help="Only these tensor-parallel sizes (comma list)."),
    "space_pp": _d("--pp", "--pipeline-model-parallel-size", "space_pp", default=None, help="Only these pipeline-parallel sizes (comma list)."),
    "space_vpp": _d("--vpp", "space_vpp", default=None,
                    help="Only these chunk counts for interleaved schedules (comma list) [default: each count up to "
                    f"{MAX_PLAN_VPP} that splits the layers]."),
    "space_mbs": _d("--micro-batch-size", "space_mbs", default="1,2,4,8", show_default=True,
                    help="Micro-batch sizes (comma list)."),
    "space_recompute": _d("--recompute", "space_recompute", default="none,selective,full", show_default=True,
                          help="Recompute modes (comma list)."),
    "space_do": _d("--distributed-optimizer", "space_do", default="both", show_default=True,
                   help="on, off or both."),
    "space_fsdp": _d("--fsdp", "space_fsdp", default="none", show_default=True,
                     help="FSDP modes to search as well (comma list of full, hybrid; none: only the "
                     "distributed-optimizer choices). Each adds candidates: hybrid one per shard size."),
    "space_fsdp_shard": _d("--fsdp-shard-size", "space_fsdp_shard", default=None,
                           help="Hybrid shard sizes to search (comma list) [default: divisors of dp x cp "
                           "between 1 and dp x cp that divide or are multiples of the GPUs per node]."),
    "space_sp": _d("--sequence-parallel", "space_sp", default="both", show_default=True,
                   help="on, off or both (tp > 1 only)."),
    "max_tp": _d("--max-tp", type=int, default=None, help="Largest tensor-parallel size."),
    "max_pp": _d("--max-pp", type=int, default=None, help="Largest pipeline-parallel size."),
    "allow_cross_node_tp": _d("--allow-cross-node-tp", is_flag=True,
                              help="Let tp exceed the GPUs per node (NVLink domain)."),
    "max_days": _d("--max-days", type=FLOAT, default=None,
                   help="With --tokens: find the fewest nodes that train within this many days."),
    "max_nodes": _d("--max-nodes", type=click.IntRange(1, 100_000), default=4096, show_default=True,
                    help="Upper bound of the --max-days search."),
    "top_k": _d("--top-k", type=click.IntRange(0, MAX_TOP_K), default=16, show_default=True,
                help="Layouts simulated on the full timeline (0: estimate only)."),
    "show": _d("--top", "show", type=int, default=10, show_default=True, help="Rows shown (JSON/CSV: all if 0)."),
    "explain": _d("--explain", is_flag=True, help="Count rejected layouts by reason."),
    "workers": _d("--workers", type=int, default=None, help="Local worker processes [default: the CPUs available]."),
    "dask_scheduler": _d("--dask-scheduler", default=None, help="Run on this Dask scheduler (tcp://host:port)."),
    # --- work budgets (pipesim.sim.budget)
    "max_actions": _d("--max-actions", type=click.IntRange(min=1), default=MAX_ACTIONS, show_default=True,
                      help="Refuse timelines of more compute actions than this (memory grows with it)."),
    "max_bars": _d("--max-bars", type=click.IntRange(min=1), default=MAX_BARS, show_default=True,
                   help="Refuse a Gantt page, image or --trace of more compute bars than this (forwards, backwards; "
                   "the transfers drawn with them add about as many again, at about 430 bytes of HTML a bar)."),
    "max_gpus": _d("--max-gpus", type=click.IntRange(min=1), default=MAX_GPUS, show_default=True,
                   help="Refuse a topology graph of more GPUs than this."),
    # --- outputs
    "as_json": _d("--json", "as_json", is_flag=True, help="Print JSON instead of tables."),
    # --- calibrate
    "fit_text": _d("--fit", "fit_text", default=None,
                   help="Comma list of profile values to fit [default: those the runs exercise among gemm_max, "
                   "gemm_max_fp8, attention, hbm, step_overhead_s]."),
    "trace_in": _d("--trace", "trace_in", default=None, metavar="STEP.json",
                help="Fit the per-op constants (gemm_max, attention, hbm, nccl) to a PyTorch profiler (Kineto) "
                "Chrome trace of one step of the CSV's single run instead of fitting step times."),
    "folds": _d("--folds", type=int, default=5, show_default=True, help="k of the k-fold holdout: 0 (none) or 2 to the number of runs; the default is capped at the runs."),
    "as_csv": _d("--csv", "as_csv", is_flag=True, help="Print the ranked results as CSV."),
    "output": _d("-o", "--output", "output", type=_PATH, default=None, help="HTML page to write."),
    "trace_path": _d("--trace", "trace_path", type=_PATH, help="Chrome-trace JSON to write (Perfetto)."),
    "image_path": _d("--image", "image_path", type=_PATH,
                     help="Static figure to write, .png, .svg or .pdf (drawn by kaleido; needs Chromium or Chrome)."),
    "plotlyjs": _d("--plotlyjs", type=click.Choice(PLOTLYJS_MODES), default="embed", show_default=True,
                   help="plotly.js in the page: embed (offline), directory (one plotly.min.js beside the "
                   "page, shared) or cdn (needs the network)."),
    "wide": _d("--wide", is_flag=True, expose_value=False, callback=lambda ctx, _p, v: _set_wide(ctx, v),
               help="Print tables at full width, however wide the terminal."),
    "config": _d("--config", type=_PATH, default=None, is_eager=True, expose_value=False,
                 callback=lambda ctx, p, v: _load_config(ctx, p, v), metavar="FILE.toml",
                 help="Experiment file: this command's flags as TOML keys (--micro-batch-size -> "
                 "micro_batch_size), optionally in sections [layout] [cluster] [energy] [pipeline]; written by "
                 "plan --scenario-out. Flags typed on the command line override the file."),
    "scenario_out": _d("--scenario-out", "--config-out", "scenario_out", default=None, type=_PATH,
                       help="Write the winner as an experiment file (pipesim simulate --config FILE)."),
    "gpu_memory_gib": _d("--gpu-memory-gib", type=FLOAT, default=None,
                         help="GPU memory capacity in GiB (2^30 B) [default: the GPU's HBM with a model]."),
    # --- collective
    "algo": _d("--algo", type=click.Choice(ALGORITHMS), default="auto", show_default=True,
               help="Algorithm; auto picks the fastest per size, as NCCL does."),
    "minbytes": _d("-b", "--minbytes", default="8", show_default=True, help="Smallest size."),
    "maxbytes": _d("-e", "--maxbytes", default="8G", show_default=True, help="Largest size."),
    "stepfactor": _d("-f", "--stepfactor", type=int, default=2, show_default=True,
                     help="Size multiplier per row."),
}  # fmt: skip
