"""Review over a real database: thresholds layered rule by rule, the queue, counts, decisions,
and the order of the report."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from shared import jobs, tenants
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.tables import Job, JobStatus, ReviewDecision
from shared.errors import Conflict, ErrorCode
from shared.jobs.review import RESULT_RULES, ready_models
from shared.queue.dispatch import NoDispatch
from shared.review import RULES, Reason
from shared.storage import make_storage
from shared.tenants import OPERATOR

QUALITY = {"input": {"mean_luma": 0.1}, "result": {"mean_luma": 0.4}}


def _reason(rule: str) -> Reason:
    return {"rule": rule, "message": f"{rule}: because", "value": 1.0, "threshold": 0.5}


def _finished_batch(
    settings: Settings, outcomes: dict[str, list[str] | None], input_prefix: str | None = None
) -> uuid.UUID:
    """A batch whose jobs finished: per input key, the rules it tripped, or None for failed."""
    with session_scope(settings.database_url) as session:
        batch, ids = jobs.create_batch(
            session,
            model="mirnet-lol",
            options={},
            inputs=[(settings.input_bucket, key) for key in outcomes],
            input_prefix=input_prefix,
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
        # The report: awaiting review (a result gone wrong, then an input rule only), then
        # decided, then failed, then the rest.
        page, matching = jobs.report_jobs(session, batch_id)
        assert matching == 5
        assert [j.input_key for j in page] == [
            "q/d.jpg",
            "q/c.jpg",
            "q/e.jpg",
            "q/b.jpg",
            "q/a.jpg",
        ]
        failed, count = jobs.report_jobs(session, batch_id, show=JobStatus.failed)
        assert count == 1 and failed[0].input_key == "q/b.jpg"
        pending, count = jobs.report_jobs(session, batch_id, show="pending", rule="still_dark")
        assert count == 1 and pending[0].input_key == "q/d.jpg"


def _decide(
    settings: Settings, job_id: uuid.UUID, decision: ReviewDecision, **kw: Any
) -> tuple[Job, Job | None]:
    with session_scope(settings.database_url) as session:
        return jobs.decide(
            session,
            settings,
            NoDispatch(),
            ModelStore(settings, make_storage(settings)),
            job_id,
            decision,
            caller=OPERATOR,
            **kw,
        )


def _ids(settings: Settings, batch_id: uuid.UUID) -> dict[str, uuid.UUID]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(select(Job.input_key, Job.id).where(Job.batch_id == batch_id))
        return {key: job_id for key, job_id in rows}


def test_the_report_orders_api_uploads_by_file_name_not_by_their_random_token(
    settings: Settings,
) -> None:
    uploads = _finished_batch(
        settings,
        {
            "uploads/zq81/b.jpg": [],
            "uploads/a7c2/c.jpg": [],
            "uploads/m4k0/a.jpg": [],
            "uploads/b001/a.jpg": [],
            "d.jpg": [],  # a key with no folder is all name
        },
    )
    # A batch made from a prefix shows each photo's path under it: ordered as those paths.
    folders = _finished_batch(
        settings,
        {"p/winter/a.jpg": [], "p/summer/x.jpg": [], "p/summer/b.jpg": []},
        input_prefix="p/",
    )
    with session_scope(settings.database_url) as session:
        page, _ = jobs.report_jobs(session, uploads)
        assert [j.input_key for j in page] == [
            "uploads/b001/a.jpg",  # the same name twice: by the whole key
            "uploads/m4k0/a.jpg",
            "uploads/zq81/b.jpg",
            "uploads/a7c2/c.jpg",
            "d.jpg",
        ]
        page, _ = jobs.report_jobs(session, folders)
        assert [j.input_key for j in page] == ["p/summer/b.jpg", "p/summer/x.jpg", "p/winter/a.jpg"]


def test_the_report_puts_results_gone_wrong_before_inputs_beyond_help(
    settings: Settings,
) -> None:
    assert set(RESULT_RULES) < set(RULES)
    batch_id = _finished_batch(
        settings,
        {
            "w/a.jpg": ["input_well_exposed"],
            "w/b.jpg": ["input_blurred"],
            "w/c.jpg": ["noise_amplified"],
            "w/d.jpg": ["colour_shifted", "input_too_dark"],  # one result rule is enough
            "w/e.jpg": ["input_too_dark"],
            "w/f.jpg": ["still_dark"],
            "w/g.jpg": [],
        },
    )
    with session_scope(settings.database_url) as session:
        page, _ = jobs.report_jobs(session, batch_id)
    assert [j.input_key for j in page] == [
        "w/c.jpg",
        "w/d.jpg",
        "w/f.jpg",
        "w/a.jpg",
        "w/b.jpg",
        "w/e.jpg",
        "w/g.jpg",
    ]


def test_decisions_on_unflagged_jobs_are_counted_apart_so_the_queue_adds_up(
    settings: Settings,
) -> None:
    batch_id = _finished_batch(
        settings,
        {"u/flagged.jpg": ["still_dark"], "u/other.jpg": ["lights_blown"], "u/plain.jpg": []},
    )
    ids = _ids(settings, batch_id)
    _decide(settings, ids["u/flagged.jpg"], ReviewDecision.accepted)
    _decide(settings, ids["u/plain.jpg"], ReviewDecision.accepted)
    with session_scope(settings.database_url) as session:
        counts = jobs.review_counts(session, batch_id)
    assert counts.flagged == 2 and counts.pending == 1
    assert counts.flagged == counts.pending + sum(counts.decisions.values())
    assert counts.decisions == {"accepted": 1, "rejected": 0, "redo": 0}
    assert counts.unflagged == {"accepted": 1, "rejected": 0, "redo": 0}


def test_a_redo_naming_a_model_without_weights_is_refused_at_the_request(
    settings: Settings,
) -> None:
    store = ModelStore(settings, make_storage(settings))
    ready = ready_models(store)
    # The suite installs mirnet-lol's weights; darkroom-night's ship in the package.
    assert {"mirnet-lol", "darkroom-night"} <= set(ready)
    not_ready = [e.name for e in store.entries() if store.allowed(e) and not store.ready(e)]
    assert "mirnet-finetuned" in not_ready and not set(not_ready) & set(ready)
    batch_id = _finished_batch(settings, {"r/a.jpg": ["still_dark"], "r/b.jpg": None})
    ids = _ids(settings, batch_id)
    for model in ("mirnet-finetuned", "mirnet-lol+mirnet-finetuned"):
        with pytest.raises(Conflict) as refused:
            _decide(settings, ids["r/a.jpg"], ReviewDecision.redo, model=model)
        assert refused.value.code == ErrorCode.conflict
        assert "'mirnet-finetuned' is not installed" in refused.value.message
        assert str(store.local_dir) not in refused.value.message  # no server paths
    with session_scope(settings.database_url) as session:
        job = session.get(Job, ids["r/a.jpg"])
        assert job is not None and job.review_decision is None  # nothing was spent
        assert not session.scalar(select(func.count()).where(Job.redo_of == job.id))
    _, redo = _decide(settings, ids["r/b.jpg"], ReviewDecision.redo, model="mirnet-lol")
    assert redo is not None and redo.model == "mirnet-lol"


def test_a_decision_on_an_unfinished_job_is_refused_in_plain_words(settings: Settings) -> None:
    with session_scope(settings.database_url) as session:
        _, (job_id,) = jobs.create_batch(
            session,
            model="mirnet-lol",
            options={},
            inputs=[(settings.input_bucket, "busy/a.jpg")],
            input_prefix=None,
        )
        assert jobs.claim(session, job_id, "test")
    with pytest.raises(Conflict) as redo:
        _decide(settings, job_id, ReviewDecision.redo)
    assert redo.value.message.endswith("is running: only a succeeded or failed job can be redone")
    with pytest.raises(Conflict) as accepted:
        _decide(settings, job_id, ReviewDecision.accepted)
    assert accepted.value.message.endswith("only a succeeded job can be accepted")
