"""`python -m rkcompile` runs the command-line interface."""

from rkcompile.cli import main

main()
