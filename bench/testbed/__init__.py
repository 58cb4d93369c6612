"""Throwaway Debian machines with real systemd, for the system tests and the benchmarks:
one booted container (container.py), or several hosts on a bridge of their own
(cluster.py)."""
