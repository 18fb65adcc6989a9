"""``darkroom``, the command line: one module per command group (``run``, ``photos``,
``evaluate``, ``database``, ``storage``, ``models``, ``tenants``), assembled in ``app``."""

from cli.app import app

__all__ = ["app"]
