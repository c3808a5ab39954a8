"""The leaderboard: result JSON files rendered to Markdown, heatmaps and an HTML page (and exported to CSV)."""

from leaderboard.render import export_csv, load_results, render_leaderboard

__all__ = ["export_csv", "load_results", "render_leaderboard"]
