"""The server each GPU preset comes in (:class:`ServerSpec`): what a command's collectives run on when the user
names no cluster.

A GPU's default cluster is its own reference server (NVLink generation, NICs per GPU), so that ``pipesim
simulate --gpu h100-sxm`` times its collectives on DGX H100 links and not on an A100's, and so that every
GPU's default is the cluster its profile was calibrated on (benchmarks/accuracy.py: the two-level DGX A100
model; benchmarks/accuracy_nemo.py: the dgx-h100 topology and the two-level DGX B200 model). Where a
topology preset describes the server, the default is that graph; the two-level figures are kept for a user
who gives one of the two-level flags (``--gpus-per-node``, ``--intra-node-GBps``, ``--inter-node-GBps``),
which choose the two-level model with the server's figures for the ones not given.

Two-level figures are per GPU per direction: the NVLink line rate of published.md section 7 at the
protocol efficiency nccl-tests measures on DGX A100 (all-reduce busbw 230 of 240 GB/s, published.md s6.2),
and across nodes the per-NIC all-reduce busbw published.md s6.2 gives (HDR 200 Gb/s: 24 GB/s; NDR 400 Gb/s
ConnectX-7: 46-48 GB/s; EDR 100 Gb/s: 12.2 GB/s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipesim.errors import InputError

__all__ = ["ServerSpec", "DGX_A100", "FILE_DEFAULT_SERVER", "SERVERS"]

_NVLINK_EFF = (
    230 / 240
)  # nccl-tests all-reduce busbw on DGX A100 over its NVLink line rate (published.md s6.2)


@dataclass(frozen=True)
class ServerSpec:
    """A GPU server: ``gpus_per_node`` GPUs, ``intra_Bps`` per GPU per direction inside it, ``inter_Bps`` per
    GPU per direction across servers (the two-level model's figures), and ``topology``, the topology preset
    that describes it (None: the two-level model is the default). ``source`` says where the figures come from."""

    name: str
    gpus_per_node: int
    intra_Bps: float
    inter_Bps: float
    topology: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1:
            raise InputError(f"server {self.name!r}: gpus_per_node={self.gpus_per_node} must be >= 1")
        for key in ("intra_Bps", "inter_Bps"):
            if not getattr(self, key) > 0:
                raise InputError(f"server {self.name!r}: {key}={getattr(self, key)} must be > 0")


DGX_A100 = ServerSpec(
    "DGX A100",
    8,
    240e9,
    24e9,
    None,
    "NVLink 3 via NVSwitch, 12 links x 25 GB/s per direction at ~20 effective (240 GB/s; all-reduce busbw 230, "
    "published.md s6.2); one HDR 200 Gb/s NIC per GPU (24 GB/s measured busbw, published.md s6.2); what "
    "benchmarks/accuracy.py calibrated the A100 profile on",
)
# The server of a GPU file that names neither a base preset nor a [server] table: DGX A100's figures, kept
# as its own object so that a report can say they were defaulted (pipesim.specs.gpu.defaults_note).
FILE_DEFAULT_SERVER = replace(
    DGX_A100, source="default (the GPU file has no base and no [server] table): " + DGX_A100.source
)
DGX_H100 = ServerSpec(
    "DGX H100 / HGX H200",
    8,
    450e9 * _NVLINK_EFF,
    47e9,
    "dgx-h100",
    "NVLink 4, 18 links, 450 GB/s per direction (published.md s7) at DGX A100's 230/240 protocol efficiency; "
    "one ConnectX-7 NDR 400 Gb/s NIC per GPU (46-48 GB/s busbw, published.md s6.2); HGX H200 has the same "
    "18 NVLink 4 links (MLPerf H200-SXM-141GBx8 system JSON, published.md s7); the dgx-h100 preset is what "
    "benchmarks/accuracy_nemo.py calibrated the H100 profile on",
)
DGX_B200 = ServerSpec(
    "DGX B200",
    8,
    900e9 * _NVLINK_EFF,
    47e9,
    None,
    "NVLink 5, 900 GB/s per direction (published.md s7) at DGX A100's 230/240 protocol efficiency; one "
    "ConnectX-7 NDR NIC per GPU (47 GB/s, published.md s6.2); what benchmarks/accuracy_nemo.py calibrated "
    "the B200 profile on",
)
GB200_NVL72 = ServerSpec(
    "GB200 NVL72 rack",
    72,
    900e9 * _NVLINK_EFF,
    47e9,
    "nvl72",
    "one NVLink 5 domain of 72 GPUs, 900 GB/s per direction (published.md s7) at the 230/240 protocol "
    "efficiency; one 400 Gb/s NIC per GPU across racks (assumption, the nvl72 preset's)",
)
DGX1_V100 = ServerSpec(
    "DGX-1 V100",
    8,
    150e9 * _NVLINK_EFF,
    12.2e9 / 2,
    "dgx1-v100",
    "NVLink 2, 6 links x 25 GB/s per direction (300 GB/s bidirectional, published.md s7) in a hybrid cube "
    "mesh; four EDR 100 Gb/s NICs per 8 GPUs (12.2 GB/s each, published.md s6.2)",
)
PCIE_H100 = ServerSpec(
    "8x H100 PCIe with NVLink bridges",
    8,
    63.04e9 * _NVLINK_EFF,
    47e9,
    "pcie-8gpu-nvbridge",
    "PCIe Gen5 x16, 63.04 GB/s per direction, GPU pairs bridged by NVLink (the pcie-8gpu-nvbridge preset; "
    "unconfirmed, as are all H100 PCIe figures); one NDR NIC per GPU (assumption)",
)
MI300X_PLATFORM = ServerSpec(
    "8x MI300X platform",
    8,
    448e9 * _NVLINK_EFF,
    47e9,
    None,
    "Infinity Fabric xGMI, 8 GPUs fully connected, 896 GB/s aggregate bidirectional (published.md s7), i.e. "
    "448 per direction, at DGX A100's NVLink protocol efficiency (unconfirmed for RCCL); one 400 Gb/s NIC per "
    "GPU (assumption)",
)

SERVERS: dict[str, ServerSpec] = {
    "v100": DGX1_V100,
    "a100-40gb": DGX_A100,
    "a100-80gb": DGX_A100,
    "h100-sxm": DGX_H100,
    "h100-pcie": PCIE_H100,
    "h200": DGX_H100,
    "b200": DGX_B200,
    "gb200": GB200_NVL72,
    "mi300x": MI300X_PLATFORM,
}
