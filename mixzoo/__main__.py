"""``python -m mixzoo`` (and ``torchrun -m mixzoo``) runs the command-line interface."""

from .app.cli import main

raise SystemExit(main())
