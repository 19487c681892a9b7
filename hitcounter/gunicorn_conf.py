"""The gunicorn configuration used everywhere: `hitcounter serve`, docker compose, CI.

Use it with `gunicorn -c python:hitcounter.gunicorn_conf 'hitcounter:create_app()'`.
Settings come from HITCOUNTER_* variables so the same file serves every deployment.
"""

from __future__ import annotations

import multiprocessing
import os

bind = os.environ.get("HITCOUNTER_BIND", "0.0.0.0:8080")
# Threads serve keep-alive connections while a worker waits on Redis.
worker_class = "gthread"
workers = int(os.environ.get("HITCOUNTER_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("HITCOUNTER_THREADS", 4))
keepalive = 5
timeout = 30
graceful_timeout = 20
# The app (and its Redis clients) is built in each worker, after the fork.
preload_app = False
# No %(h)s (client address) and no User-Agent: visitors are never logged.
accesslog = "-"
access_log_format = '"%(r)s" %(s)s %(b)s %(M)sms'
