"""An app whose background tasks run locally, on Celery or on RQ, chosen by configuration."""
