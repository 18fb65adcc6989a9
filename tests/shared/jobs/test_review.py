"""Review over a real database: thresholds layered rule by rule, the queue, counts, decisions,
and the order of the report."""

from __future__ import annotations

import uuid

from shared import jobs, tenants
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.tables import JobStatus, ReviewDecision
from shared.queue.dispatch import NoDispatch
from shared.review import Reason
from shared.storage import make_storage
from shared.tenants import OPERATOR

QUALITY = {"input": {"mean_luma": 0.1}, "result": {"mean_luma": 0.4}}


def _reason(rule: str) -> Reason:
    return {"rule": rule, "message": f"{rule}: because", "value": 1.0, "threshold": 0.5}


def _finished_batch(settings: Settings, outcomes: dict[str, list[str] | None]) -> uuid.UUID:
    """A batch whose jobs finished: per input key, the rules it tripped, or None for failed."""
    with session_scope(settings.database_url) as session:
        batch, ids = jobs.create_batch(
            session,
            model="mirnet-lol",
            options={},
            inputs=[(settings.input_bucket, key) for key in outcomes],
            input_prefix=None,
        )
        for job_id, rules in zip(ids, outcomes.values(), strict=True):
            assert jobs.claim(session, job_id, "test")
            if rules is None:
                jobs.fail(session, job_id, code="invalid_image", message="broken")
            else:
                jobs.succeed(
                    session,
                    job_id,
                    output_bucket=settings.output_bucket,
                    output_key=f"results/{job_id}/out.jpg",
                    timings={},
                    quality=QUALITY,
                    reasons=[_reason(rule) for rule in rules],
                )
        return batch.id


def test_a_tenants_rules_sit_between_the_servers_and_the_batchs(settings: Settings) -> None:
    tenant_id = f"th-{uuid.uuid4().hex[:8]}"
    with session_scope(settings.database_url) as session:
        tenants.create_tenant(session, tenant_id)
        tenants.set_review_rules(session, tenant_id, {"still_dark": 0.1, "lights_blown": False})
    defaults = settings.review
    with session_scope(settings.database_url) as session:
        plain = jobs.review_thresholds(session, defaults, "default", {})
        tenant = jobs.review_thresholds(session, defaults, tenant_id, {})
        batch = jobs.review_thresholds(
            session, defaults, tenant_id, {"review": {"still_dark": 0.3, "noise_amplified": False}}
        )
    assert plain == defaults.model_dump()
    assert tenant["still_dark"] == 0.1 and tenant["lights_blown"] is None
    assert tenant["colour_shifted"] == defaults.colour_shifted
    assert batch["still_dark"] == 0.3 and batch["noise_amplified"] is None
    assert batch["lights_blown"] is None  # the tenant's "off" holds unless the batch says more


def test_the_queue_pages_flagged_jobs_and_counts_follow_decisions(settings: Settings) -> None:
    batch_id = _finished_batch(
        settings,
        {
            "q/e.jpg": ["still_dark"],
            "q/a.jpg": [],
            "q/d.jpg": ["lights_blown", "still_dark"],
            "q/b.jpg": None,
            "q/c.jpg": ["input_blurred"],
        },
    )
    with session_scope(settings.database_url) as session:
        first, cursor = jobs.review_queue(session, batch_id, limit=2)
        assert len(first) == 2 and cursor
        rest, end = jobs.review_queue(session, batch_id, limit=2, cursor=cursor)
        assert len(rest) == 1 and end is None
        queued = [job.input_key for job in first + rest]
        assert sorted(queued) == ["q/c.jpg", "q/d.jpg", "q/e.jpg"]
        dark, _ = jobs.review_queue(session, batch_id, rule="still_dark")
        assert sorted(job.input_key for job in dark) == ["q/d.jpg", "q/e.jpg"]
        counts = jobs.review_counts(session, batch_id)
        assert (counts.flagged, counts.pending) == (3, 3)
        assert counts.rules == {"still_dark": 2, "lights_blown": 1, "input_blurred": 1}
        assert list(counts.rules) == ["still_dark", "lights_blown", "input_blurred"]  # RULES order
        flagged_e = next(job for job in first + rest if job.input_key == "q/e.jpg")
    storage = make_storage(settings)
    with session_scope(settings.database_url) as session:
        job, redo = jobs.decide(
            session,
            settings,
            NoDispatch(),
            ModelStore(settings, storage),
            flagged_e.id,
            ReviewDecision.accepted,
            caller=OPERATOR,
        )
        assert job.review_decision == ReviewDecision.accepted and redo is None
    with session_scope(settings.database_url) as session:
        counts = jobs.review_counts(session, batch_id)
        assert counts.pending == 2 and counts.decisions["accepted"] == 1
        decided, _ = jobs.review_queue(session, batch_id, which="decided")
        assert [j.id for j in decided] == [flagged_e.id]
        assert len(jobs.review_queue(session, batch_id, which="all")[0]) == 3
        # The report: awaiting review by name, then decided, then failed, then the rest.
        page, matching = jobs.report_jobs(session, batch_id)
        assert matching == 5
        assert [j.input_key for j in page] == [
            "q/c.jpg",
            "q/d.jpg",
            "q/e.jpg",
            "q/b.jpg",
            "q/a.jpg",
        ]
        failed, count = jobs.report_jobs(session, batch_id, show=JobStatus.failed)
        assert count == 1 and failed[0].input_key == "q/b.jpg"
        pending, count = jobs.report_jobs(session, batch_id, show="pending", rule="still_dark")
        assert count == 1 and pending[0].input_key == "q/d.jpg"
