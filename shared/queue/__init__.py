"""The broker side shared by API and workers: Celery configuration and stage dispatch."""
