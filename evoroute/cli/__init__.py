"""Command line: ``python -m evoroute <command> ...``.

``main.py`` builds the parser and maps errors to one line; each other module is one group of
subcommands and registers its own arguments (``register(sub)``) next to the code that runs them.
"""
