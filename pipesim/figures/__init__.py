"""plotly pages and figures. This package's own module imports nothing heavy, so the CLI can name the
page options without loading plotly."""

PLOTLYJS_MODES = ("embed", "directory", "cdn")  # where a page gets plotly.js (pipesim.figures.page)
