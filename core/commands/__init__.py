"""Sub-commands of `python -m core`, one module each (see core/cli.py)."""
