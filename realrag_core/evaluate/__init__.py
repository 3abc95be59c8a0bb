"""Stage 6 and reports: FID/KID and companions, the results tables, statistics, summaries, plots, checks."""
