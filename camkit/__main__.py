"""``python -m camkit`` runs the command-line tool."""

from camkit.cli.app import main

main()
