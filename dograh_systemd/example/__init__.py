"""The embedded default: what a fresh install serves before a real app is configured."""
