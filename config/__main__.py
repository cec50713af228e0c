"""`python -m config` runs the `gridshift` command."""

from config.cli import main

main()
