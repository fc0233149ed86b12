"""``python -m edgevcf`` runs the CLI."""

from edgevcf.cli import main

main()
