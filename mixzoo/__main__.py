"""``python -m mixzoo`` (and ``torchrun -m mixzoo``) runs the command-line interface."""

from .cli import main

raise SystemExit(main())
