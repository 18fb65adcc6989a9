"""The HTTP API. It never imports torch: restoration happens in ``workers``."""
