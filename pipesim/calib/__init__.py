"""Fitting GPU efficiency profiles to measured runs."""
