"""Photo files and what is measured of them: decoding and encoding (formats, orientation,
metadata, 16-bit PNG), colour (sRGB and linear light, luma), no-reference measures and the
per-job quality signals with their previews.

Needs numpy, Pillow and scikit-image, never torch: the API could read a photo's header, a
benchmark or a report could measure one, without loading an engine. Knows nothing of jobs,
queues or the database."""
