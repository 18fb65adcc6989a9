"""A job's review thresholds: the server's, its tenant's, its batch's, rule by rule."""

from __future__ import annotations

import uuid

from shared import jobs, tenants
from shared.config import Settings
from shared.db.engine import session_scope


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
