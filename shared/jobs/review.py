"""Review: which jobs a person should look at, and what the person decided.

A worker flags a job when it finishes (``shared.review.rules`` on the job's quality, with the
thresholds :func:`review_thresholds` resolves). Here the flagged jobs of a batch are listed
(:func:`review_queue`), counted (:func:`review_counts`) and decided (:func:`decide`): accepted,
rejected, or sent back to be redone with another model or options, which creates a new job in
the same batch, linked to the old one by ``Job.redo_of``; both results stay.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import SQLColumnExpression, and_, case, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from shared.catalogue.store import ModelStore
from shared.config import ReviewThresholds, Settings
from shared.db.tables import Batch, Job, JobStatus, ReviewDecision, Tenant, utcnow
from shared.errors import Conflict, InvalidRequest
from shared.jobs import repository
from shared.jobs.submit import check_active, plan
from shared.queue.dispatch import Dispatcher
from shared.review import RULES, resolve_thresholds
from shared.tenants.accounts import Caller

RESULT_RULES = ("still_dark", "lights_blown", "noise_amplified", "colour_shifted")
"""The rules that say the restoration went wrong, which a person can act on (redo with another
model or options); the report puts the jobs they flag before those flagged only by the
``input_*`` rules, which say the input was already fine or beyond help."""

QueueFilter = Literal["pending", "decided", "all"]
"""Which flagged jobs the queue lists: awaiting a decision, decided, or both."""

_DECIDABLE = {
    ReviewDecision.accepted: (JobStatus.succeeded,),
    ReviewDecision.rejected: (JobStatus.succeeded,),
    ReviewDecision.redo: (JobStatus.succeeded, JobStatus.failed),
}
"""A result can be accepted or rejected; a failed job can still be redone."""

_DONE_TO = {
    ReviewDecision.accepted: "accepted",
    ReviewDecision.rejected: "rejected",
    ReviewDecision.redo: "redone",
}
"""How a sentence says a decision was made: a job is "redone", not "redo"."""


def review_thresholds(
    session: Session, defaults: ReviewThresholds, tenant_id: str, options: Mapping[str, Any]
) -> dict[str, float | None]:
    """The thresholds a job is checked with: the server's, its tenant's, its batch's."""
    tenant_rules = session.scalar(select(Tenant.review_rules).where(Tenant.id == tenant_id))
    return resolve_thresholds(defaults, tenant_rules, options.get("review"))


@dataclass(frozen=True)
class ReviewCounts:
    """The review queue's counts: ``flagged == pending + sum(decisions.values())``, so every
    flagged job is in exactly one of them. Decisions on jobs no rule flagged (a person who
    looked anyway, a failed job sent to redo) are not part of the queue: ``unflagged``."""

    flagged: int = 0
    """Jobs a rule flagged."""
    pending: int = 0
    """Flagged jobs nobody has decided on yet."""
    decisions: dict[str, int] = field(default_factory=dict)
    """Decisions on flagged jobs: accepted, rejected, redo."""
    rules: dict[str, int] = field(default_factory=dict)
    """Flagged jobs per rule (a job may trip several)."""
    unflagged: dict[str, int] = field(default_factory=dict)
    """Decisions on jobs no rule flagged, by decision."""


def review_counts(session: Session, batch_id: uuid.UUID) -> ReviewCounts:
    decisions = {decision.value: 0 for decision in ReviewDecision}
    unflagged = {decision.value: 0 for decision in ReviewDecision}
    flagged = pending = 0
    for is_flagged, decision, count in session.execute(
        select(Job.flagged, Job.review_decision, func.count())
        .where(Job.batch_id == batch_id, or_(Job.flagged, Job.review_decision.is_not(None)))
        .group_by(Job.flagged, Job.review_decision)
    ):
        if is_flagged:
            flagged += count
            if decision is None:
                pending += count
            else:
                decisions[ReviewDecision(decision).value] += count
        elif decision is not None:
            unflagged[ReviewDecision(decision).value] += count
    rules: Counter[str] = Counter()
    for flags in session.scalars(select(Job.flags).where(Job.batch_id == batch_id, Job.flagged)):
        rules.update(name for name in (flags or "").split(",") if name)
    ordered = {name: rules[name] for name in RULES if rules[name]}
    return ReviewCounts(
        flagged=flagged, pending=pending, decisions=decisions, rules=ordered, unflagged=unflagged
    )


def _tripped(rule: str) -> ColumnElement[bool]:
    """Jobs that tripped ``rule``; an unknown name is the caller's mistake to hear about."""
    if rule not in RULES:
        raise InvalidRequest(f"unknown review rule {rule!r} (rules: {', '.join(RULES)})")
    return Job.flags.like(f"%,{rule},%")


def review_queue(
    session: Session,
    batch_id: uuid.UUID,
    *,
    which: QueueFilter = "pending",
    rule: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Job], str | None]:
    """A batch's flagged jobs, oldest first, keyset-paginated on (created_at, id)."""
    query = (
        select(Job)
        .where(Job.batch_id == batch_id, Job.flagged)
        .order_by(Job.created_at, Job.id)
        .limit(limit + 1)
    )
    if which == "pending":
        query = query.where(Job.review_decision.is_(None))
    elif which == "decided":
        query = query.where(Job.review_decision.is_not(None))
    if rule is not None:
        query = query.where(_tripped(rule))
    if cursor:
        created, job_id = repository.decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at > created, and_(Job.created_at == created, Job.id > job_id))
        )
    found = list(session.scalars(query))
    next_cursor = repository.encode_cursor(found[limit - 1]) if len(found) > limit else None
    return found[:limit], next_cursor


def _record_decision(
    session: Session,
    job_id: uuid.UUID,
    decision: ReviewDecision,
    allowed: Sequence[JobStatus],
    note: str | None,
) -> None:
    """The decision, written only while the job is still decidable: a conditional update, so
    two people redoing one job at once make one new job, and the second hears who won."""
    won = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status.in_(list(allowed)),
            or_(Job.review_decision.is_(None), Job.review_decision != ReviewDecision.redo),
        )
        .values(review_decision=decision, review_note=note, reviewed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not won:
        session.rollback()
        successor = session.scalar(select(Job.id).where(Job.redo_of == job_id))
        raise Conflict(f"job {job_id} was already sent back to be redone, as job {successor}")


def decide(
    session: Session,
    settings: Settings,
    dispatcher: Dispatcher,
    models: ModelStore,
    job_id: uuid.UUID,
    decision: ReviewDecision,
    *,
    caller: Caller,
    model: str | None = None,
    options: dict[str, Any] | None = None,
    note: str | None = None,
) -> tuple[Job, Job | None]:
    """Record a person's decision about a finished job; for ``redo``, also create and queue the
    new try (``model`` and ``options`` default to the old job's). Returns (job, new job or
    None). A decision may be changed, except after a redo: that job has a successor."""
    if decision != ReviewDecision.redo and (model is not None or options is not None):
        raise InvalidRequest("'model' and 'options' go with the decision 'redo' only")
    job = repository.get_job(session, job_id, caller.tenant_id)
    allowed = _DECIDABLE[decision]
    if job.status not in allowed:
        states = " or ".join(status.value for status in allowed)
        raise Conflict(
            f"job {job_id} is {job.status.value}: only a {states} job can be {_DONE_TO[decision]}"
        )
    family = normalised = None
    if decision == ReviewDecision.redo:
        family, normalised = plan(models, model or job.model, job.options | (options or {}))
        check_ready(models, model or job.model)
        check_active(session, caller, 1)
    _record_decision(session, job_id, decision, allowed, note)
    redo = None
    if decision == ReviewDecision.redo:
        assert normalised is not None and family is not None
        redo = repository.create_job(
            session,
            model=model or job.model,
            input_bucket=job.input_bucket,
            input_key=job.input_key,
            options=normalised,
            tenant_id=job.tenant_id,
            webhook_url=job.webhook_url,
            batch_id=job.batch_id,
            redo_of=job.id,
        )
    session.commit()
    if redo is not None and family is not None:
        dispatcher.dispatch([(redo.id, family)])
    session.refresh(job)
    return job, redo


def ready_models(models: ModelStore) -> list[str]:
    """The models a redo may name here: allowed under this deployment's licence setting, with
    their weights installed (``ready``, as ``GET /v1/models`` says). Offering any other would
    only queue a job bound to fail ``model_unavailable``."""
    return [e.name for e in models.entries() if models.allowed(e) and models.ready(e)]


def check_ready(models: ModelStore, model: str) -> None:
    """Refuse, at the request, a redo that could not run: a person is waiting for its answer,
    and a job that fails ``model_unavailable`` minutes later tells them less, after the old
    job's decision is already spent. (A new job through ``POST /v1/jobs`` is still accepted:
    weights may be installed before a worker takes it.)"""
    missing = [entry.name for entry, _ in models.chain(model) if not models.ready(entry)]
    if missing:
        names = ", ".join(repr(name) for name in missing)
        ready = ", ".join(ready_models(models)) or "none"
        # 409 conflict, not ModelUnavailable: that code is a 503, "try again later", and
        # here nothing will change until an operator installs the weights.
        are = "is" if len(missing) == 1 else "are"
        raise Conflict(
            f"cannot redo with {model!r}: {names} {are} not installed on this server; choose "
            f"a model that is ({ready}), or ask its operator to install it"
        )


def redone_by(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """For each of ``job_ids`` that was sent back to be redone, the id of its new try."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.redo_of, Job.id).where(Job.redo_of.in_(job_ids)))
    return {old: new for old, new in rows if old is not None}


ReportFilter = Literal["flagged", "pending"] | JobStatus
"""What the report page narrows to besides a rule: flagged jobs, flagged jobs awaiting a
decision, or one job status."""


def report_jobs(
    session: Session,
    batch_id: uuid.UUID,
    *,
    show: ReportFilter | None = None,
    rule: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Job], int]:
    """One page of a batch's jobs as its report shows them, and how many match in all:
    flagged jobs first (those awaiting a decision before decided ones; in each, those a
    :data:`RESULT_RULES` rule flagged before those only an input rule did), then failed ones,
    then the rest, each group by the photo's name (:func:`_by_name`)."""
    conditions: list[ColumnElement[bool]] = [Job.batch_id == batch_id]
    if rule is not None:
        conditions.append(_tripped(rule))
    if show == "flagged":
        conditions.append(Job.flagged.is_(True))
    elif show == "pending":
        conditions += [Job.flagged.is_(True), Job.review_decision.is_(None)]
    elif show is not None:
        conditions.append(Job.status == show)
    total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    result_went_wrong = or_(*(Job.flags.like(f"%,{rule},%") for rule in RESULT_RULES))
    order = (
        Job.flagged.desc(),
        Job.review_decision.is_not(None),
        case((result_went_wrong, 0), else_=1),
        (Job.status == JobStatus.failed).desc(),
        *_by_name(session, batch_id),
        Job.id,
    )
    page = session.scalars(
        select(Job).where(*conditions).order_by(*order).offset(offset).limit(limit)
    )
    return list(page), total


def _by_name(session: Session, batch_id: uuid.UUID) -> tuple[SQLColumnExpression[str], ...]:
    """The order of the names the report shows, as a folder lists them. A batch made from a
    prefix shows each photo's path under it, so its keys sort as the names do. Any other
    batch (a list of keys, API uploads under ``uploads/<random token>/``) shows the file name:
    sorting by key would follow the random tokens, so sort by file name, then key."""
    if session.scalar(select(Batch.input_prefix).where(Batch.id == batch_id)):
        return (Job.input_key,)
    return (_file_name(Job.input_key), Job.input_key)


def _file_name(key: SQLColumnExpression[str]) -> SQLColumnExpression[str]:
    """What follows a key's last '/', in SQL that PostgreSQL and SQLite both run: stripping
    every character but '/' from the right leaves the folder, and the key without it is the
    name (a key without '/' is all name)."""
    folder = func.rtrim(key, func.replace(key, "/", ""))
    return func.replace(key, folder, "")
