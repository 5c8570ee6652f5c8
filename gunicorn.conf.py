"""Gunicorn settings for `gunicorn app:app` from a checkout: the package's own
(tokensvc/processes/gunicorn_conf.py), which `tokensvc serve` uses from any directory."""

from tokensvc.processes.gunicorn_conf import *  # noqa: F403
