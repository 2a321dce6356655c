"""Kubernetes manifest checks for operators and CI, run via `socialproof deploy check`."""
