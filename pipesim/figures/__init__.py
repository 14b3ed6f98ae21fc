"""Interactive figures (plotly is imported only inside this package)."""
