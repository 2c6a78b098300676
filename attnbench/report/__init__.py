"""Reports from run folders: tables, plots, the HTML and Markdown report, comparisons and
recommendations (reads records; runs nothing)."""
