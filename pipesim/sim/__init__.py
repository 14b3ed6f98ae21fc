"""Scenarios end to end: the timeline engine, its metrics, chart series, traces and energy."""
