"""What the API, the workers and the tools all use: settings, errors, logs, the database, object
storage, the queue, the model catalogue, tenants, review rules, webhooks and all SQL about jobs.
It imports no other package of Darkroom's, and never torch."""
