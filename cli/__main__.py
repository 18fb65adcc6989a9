"""``python -m cli``: how ``darkroom worker --gpus`` starts its children."""

from cli.app import app

app()
