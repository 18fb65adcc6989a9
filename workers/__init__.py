"""The GPU side: Celery tasks, the restoration pipeline, model architectures."""
