"""`python -m bridge` runs the bridge (as `orders bridge` does)."""

from bridge.main import main

main()
