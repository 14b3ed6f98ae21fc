"""Capacity planning: search space, analytic estimator, ranking and executors."""
