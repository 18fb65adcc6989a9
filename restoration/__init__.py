"""The engine: from a catalogue entry to a loaded network that restores a whole photo of any
size. Loading and the per-process cache (``restorers``), the tiler and its plan, padding, the
passes that see the whole photo (``photo_passes``), the chroma clean-up, spandrel's adapters,
Darkroom's own ``architectures`` and the ``device`` (acceleration, precision, out-of-memory,
allocator, cross-job batching).

Uses torch; knows no jobs, queues, databases or metrics (the runtime in ``workers`` hooks its
own timing in)."""
