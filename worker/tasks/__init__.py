"""Celery stage tasks: claim a job, run one stage of the model library, store, advance."""
