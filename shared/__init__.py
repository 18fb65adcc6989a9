"""Code that both the API and the workers use: settings, database, storage, queue, catalogue."""
