"""``darkroom``, the command line and the composition root: one module per command group
(``run``, ``photos``, ``evaluate``, ``database``, ``storage``, ``models``, ``tenants``,
``report``), assembled in ``app``. It is the only package that imports both the API and the
workers, and nothing imports it; each command imports the rooms it runs when it runs, so the
API image (no torch) loads it too."""

from cli.app import app

__all__ = ["app"]
