"""Lets `python -m reconciler` work like the `reconcile` command."""

from reconciler.cli.main import main

if __name__ == "__main__":
    main()
