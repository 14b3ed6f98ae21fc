"""Validated specs: model shape, GPU profile, parallel layout and its rank grid."""
