"""The communication model: its protocol, the two-level model and the topology-graph model."""
