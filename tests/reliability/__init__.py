"""Reliability scenarios: kills, restarts, bad input, soak; each audits lost and counted-twice orders."""
