"""The ``darkroom`` command: every command group, put together.

The CLI is Darkroom's composition root: the only code that may import both ``api`` and
``workers`` (each only inside the command that runs it), so the rest of ``shared`` stays
below both.
"""

from __future__ import annotations

import typer

from cli import database, evaluate, models, photos, report, run, storage, tenants

HELP = """Restore dark, noisy, shaken photos: run the API or a worker, submit photos, follow
jobs, manage models, tenants and the database.

With no configuration everything is embedded (SQLite, a local object folder, jobs run in
this process), so "darkroom submit photos/ --out restored/" works on a fresh machine.
"""

app = typer.Typer(
    help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None
)
app.command()(run.serve)
app.command()(run.worker)
app.command()(run.maintenance)
app.command()(run.cleanup)
app.command()(photos.submit)
app.command()(photos.status)
app.command()(report.report)
app.command("eval")(evaluate.evaluate)
app.add_typer(database.app, name="db")
app.add_typer(storage.app, name="buckets")
app.add_typer(models.app, name="models")
app.add_typer(tenants.tenants_app, name="tenants")
app.add_typer(tenants.keys_app, name="keys")
