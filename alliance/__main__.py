"""Command line: python -m alliance {demo,summary,import,report,bench} ..."""

from alliance.cli import main

raise SystemExit(main())
