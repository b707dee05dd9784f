"""The ``arete`` command line: composes each package's Typer sub-app."""
