"""``python -m tonearm`` runs the command line."""

from tonearm.cli import main

main()
