"""The job runtime: the Celery app and tasks (``celery_app``, ``tasks``), the embedded poller,
one job start to finish (``pipeline``), recovery of lost jobs and background upkeep
(``maintenance``, ``housekeeping``), each process's metrics and the multi-GPU process supervisor
(``gpus``).

It composes the engine (``restoration``) with photo files (``imaging``) and the shared rooms;
it never holds a network's code or a photo format's."""
