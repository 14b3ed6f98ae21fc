"""FLOPs, bytes and op times on a GPU profile, memory, and the per-operator roofline."""
