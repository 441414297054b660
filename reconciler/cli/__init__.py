"""The ``reconcile`` command line: click commands that parse, call the use cases, render, exit."""
