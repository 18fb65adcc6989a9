"""Jobs and batches: every query about them (``repository``), every status change
(``transitions``), what a finished job owes (``events``) and a batch's progress (``batches``),
people's reviews of finished jobs (``review``), submitting and cancelling work (``submit``,
with the options it accepts in ``options``), and deleting results past their retention
(``retention``).

This package holds all SQL about jobs and batches; nothing else queries those tables.
"""

from shared.jobs.batches import BatchSummary, finish_batch_if_done, summarize_batch, sweep_batches
from shared.jobs.repository import (
    count_active,
    create_batch,
    create_job,
    find_by_idempotency_key,
    get_batch,
    get_job,
    jobs_of_batches,
    list_jobs,
    queued_before,
    queued_ids,
    status_counts,
)
from shared.jobs.review import (
    ReviewCounts,
    decide,
    redone_by,
    report_jobs,
    review_counts,
    review_queue,
    review_thresholds,
)
from shared.jobs.submit import (
    ResultLink,
    cancel_job,
    preview_links,
    result_link,
    submit_batch,
    submit_job,
)
from shared.jobs.transitions import (
    cancel,
    cancel_requested,
    claim,
    fail,
    heartbeat,
    mark_cancelled,
    reap,
    record_progress,
    requeue,
    succeed,
)

__all__ = [
    "BatchSummary",
    "ResultLink",
    "ReviewCounts",
    "cancel",
    "cancel_job",
    "cancel_requested",
    "claim",
    "count_active",
    "create_batch",
    "create_job",
    "decide",
    "fail",
    "find_by_idempotency_key",
    "finish_batch_if_done",
    "get_batch",
    "get_job",
    "heartbeat",
    "jobs_of_batches",
    "list_jobs",
    "mark_cancelled",
    "preview_links",
    "queued_before",
    "queued_ids",
    "reap",
    "record_progress",
    "redone_by",
    "report_jobs",
    "requeue",
    "result_link",
    "review_counts",
    "review_queue",
    "review_thresholds",
    "status_counts",
    "submit_batch",
    "submit_job",
    "succeed",
    "summarize_batch",
    "sweep_batches",
]
