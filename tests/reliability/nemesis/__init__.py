"""The nemesis (issue 24): a seeded schedule of random faults, the actions that inject and heal them, and
the run that drives them against the replicated lane while orders flow (tests/reliability/cluster/
test_nemesis.py); the independent checker (tests/checker/) judges the end state."""
