"""`orders up`: the local stack without Docker, its supervisor, and the launchers the tests use too."""
