"""Megatron-Core's theoretical memory estimate reproduced for its own GPT-3 175B example, against pipesim's
memory model (the simulated step's rank-0 memory).

Megatron's formulas (NVIDIA/Megatron-LM, megatron/training/theoretical_memory_usage.py,
``compute_weight_and_optimizer_memory`` and ``compute_activation_memory_without_sp``; published.md section 3)
are written out below as arithmetic; the configuration is examples/gpt3/train_gpt3_175b_distributed.sh: 96
layers, h 12288, 96 heads, seq 2048, micro-batch 1, global batch 1536, fp16, tp 8, pp 16 (no distributed
optimizer, no sequence parallelism, no recomputation), GPT-2 vocabulary padded to 51,200, on 128 GPUs (dp 1).

* Weights and optimizer, most loaded shard (the first stage): ((L (12 h^2 + 4 h) + 2 h) / p + V h) / t
  parameters x 18 bytes. Megatron's layer count 12 h^2 + 4 h has the two LayerNorms' 4 h but no linear
  biases, and its transformer block includes the final LayerNorm (2 h) spread over the p stages; its
  embedding is V h. pipesim deliberately differs by (L/p x 9 h + s h - 2 h / p) / t parameters: it counts
  the linear biases (QKV 3h, projection h, fc1 4h, fc2 h: 12 h^2 + 13 h per layer, SC21 eq. 2), GPT's learned
  position table s h on the first stage, and the final norm on the last stage only.
* Activations (no SP, no selective recomputation: the ``without_sp`` path): 1.05 x [L s b h (10 + 24/t)
  + 8 s b p + s b h p] x (1 + (p-1)/(p v)) with virtual stages (x min(1, m/p) without), the first stage
  holding p microbatches of L/p layers (Korthikanti et al. eq. 5). pipesim counts the same terms from the
  simulated timeline and differs, deliberately, by (i) FlashAttention's fp32 log-sum-exp, 4 bytes per head and
  token (4 a s b / t per layer), which Megatron's estimate omits, and (ii) with interleaving, the embedding
  extras of the microbatches chunk 0 really holds at rank 0's peak (2p = 32 for p = 16, v = 3: the first group
  of p, then the second group that the steady state completes before chunk 0's first backward) where
  Megatron spreads them with the average penalty, p (1 + (p-1)/(p v)) = 21.
"""

from __future__ import annotations

import pytest

from pipesim.comm.base import LevelCommModel
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model

L, H, A, S, B, V = 96, 12288, 96, 2048, 1, 51200  # examples/gpt3/train_gpt3_175b_distributed.sh
T, P = 8, 16
OVERHEAD = 1.05  # compute_activation_memory_without_sp's overhead_factor


def _rank0(vpp: int):  # type: ignore[no-untyped-def]
    layout = Layout(
        tp=T,
        pp=P,
        dp=1,
        vpp=vpp,
        micro_batch_size=B,
        global_batch_size=1536,
        precision="fp16",
        schedule="interleaved-1f1b" if vpp > 1 else "1f1b",
    )
    report = simulate_scenario(
        Scenario(get_model("gpt3-175b"), get_gpu("a100-80gb"), layout, LevelCommModel())
    )
    return report.memory[0]


def test_preset_matches_the_example() -> None:
    m = get_model("gpt3-175b")
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.seq_length, m.vocab_size) == (L, H, A, S, V)
    assert m.dropout and m.learned_positions and m.tied_embeddings


@pytest.mark.parametrize("vpp", [1, 3])
def test_weights_and_optimizer_of_the_most_loaded_shard(vpp: int) -> None:
    megatron_params = ((L * (12 * H * H + 4 * H) + 2 * H) / P + V * H) / T
    megatron_bytes = megatron_params * 18  # not use_distributed_optimizer: 18 bytes per parameter
    assert megatron_bytes == pytest.approx(25_877_425_536, rel=1e-12)  # 25.9 GB
    r0 = _rank0(vpp)
    pipesim_bytes = r0.weights + r0.grads + r0.optimizer
    documented = (L / P * 9 * H + S * H - 2 * H / P) / T * 18  # biases + position table - final norm share
    assert pipesim_bytes - megatron_bytes == pytest.approx(documented, rel=1e-9)
    assert documented / megatron_bytes < 0.003  # 0.22%


def test_activations_non_interleaved_1f1b() -> None:
    m = 1536  # microbatches: global batch / (micro batch x dp)
    megatron = (L * S * B * H * (10 + 24 / T) + 8 * S * B * P + S * B * H * P) * min(1, m / P) * OVERHEAD
    assert megatron == pytest.approx(33_400_356_864, rel=1e-12)  # 33.4 GB
    lse = OVERHEAD * L * 4 * A * S * B / T  # FlashAttention's log-sum-exp, omitted by Megatron's estimate
    assert _rank0(1).activations - megatron == pytest.approx(lse, rel=1e-6)


def test_activations_interleaved() -> None:
    v = 3  # --num-layers-per-virtual-pipeline-stage 2
    penalty = 1 + (P - 1) / (P * v)  # interleaved_schedule_memory_penalty = 1.3125
    megatron = (L * S * B * H * (10 + 24 / T) + 8 * S * B * P + S * B * H * P) * penalty * OVERHEAD
    assert megatron == pytest.approx(43_837_968_384, rel=1e-12)  # 43.8 GB
    lse = OVERHEAD * L * 4 * A * S * B / T * penalty
    embedding = OVERHEAD * (2 * P - P * penalty) * (8 * S * B + S * B * H)  # 32 held, 21 estimated
    assert _rank0(v).activations - megatron == pytest.approx(lse + embedding, rel=1e-6)
    assert (lse + embedding) / megatron < 0.007  # 0.7%
