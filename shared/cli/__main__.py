"""``python -m shared.cli``: how ``darkroom worker --gpus`` starts its children."""

from shared.cli.app import app

app()
