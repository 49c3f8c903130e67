"""IronTrack's benchmark: one home, one entry point (``python -m bench COMMAND``; see README.md)."""
