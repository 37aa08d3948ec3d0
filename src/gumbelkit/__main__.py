"""``python -m gumbelkit``: the command line tool."""

from gumbelkit.cli import main

raise SystemExit(main())
