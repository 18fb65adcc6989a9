"""The database: engines and sessions (``engine``), the tables (``tables``) and their Alembic
migrations (``migrate``, ``migrations/``). The database, not the broker, is the source of truth
for every job; what the rows mean and how they change is the jobs package's business.
"""
