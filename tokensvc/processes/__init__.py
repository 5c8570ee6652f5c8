"""The processes: the webhook worker and the gunicorn glue."""
