"""The human study: tasks, the blind local page and its vote store, and the study's results."""
