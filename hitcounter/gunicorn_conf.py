"""The gunicorn configuration used everywhere: `hitcounter serve`, docker compose, CI.

Use it with `gunicorn -c python:hitcounter.gunicorn_conf 'hitcounter:create_app()'`.
Settings come from HITCOUNTER_* variables so the same file serves every deployment;
anything else gunicorn knows can still be set with GUNICORN_CMD_ARGS or the command line.

- HITCOUNTER_BIND        address to listen on (default 0.0.0.0:8080)
- HITCOUNTER_WORKERS     worker processes (default: the CPUs this process may use, min. 2)
- HITCOUNTER_WORKER_CONNECTIONS  connections one worker serves at once (default 1000)
- HITCOUNTER_WORKER_CLASS  gevent (default: hitcounter.worker's gevent worker, which
                         takes only its share of connections), or gthread with
                         HITCOUNTER_THREADS threads per worker (default 4)
- HITCOUNTER_KEEPALIVE   seconds an idle keep-alive connection stays open (default 75)
- HITCOUNTER_LOG_LEVEL   level of the app's and gunicorn's logs (default INFO)
- HITCOUNTER_ACCESS_LOG  1 writes one access line per request (default off)
- PROMETHEUS_MULTIPROC_DIR  where workers keep their metrics (default: a new temporary
  directory when there is more than one worker)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _cpus() -> int:
    # The CPUs this process may run on (a container's cpuset), not the host's count.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


bind = os.environ.get("HITCOUNTER_BIND", "0.0.0.0:8080")
# gevent: each request is a greenlet, so a hit waiting on its Redis round trip costs a
# greenlet switch instead of an OS thread's wake-up and a fight for the GIL, and the hits
# waiting together share one round trip (group commit) cheaply. The benchmark measured a
# pixel hit at about 25% less server CPU than under gthread (tests/bench, README). gunicorn
# patches the worker's sockets and threads before the app is built; nothing here blocks
# in C but the spool's fsync, which runs only while Redis is away. gthread remains one
# setting away. One process per CPU; at least two, so a crashed or restarting worker
# never leaves the server without one.
_SPREADING_WORKER = "hitcounter.worker.SpreadingGeventWorker"
worker_class = os.environ.get("HITCOUNTER_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    # gunicorn's gevent worker, taking no more than its share of connections (worker.py).
    worker_class = _SPREADING_WORKER
workers = _int_env("HITCOUNTER_WORKERS", max(2, _cpus()))
worker_connections = _int_env("HITCOUNTER_WORKER_CONNECTIONS", 1000)
threads = _int_env("HITCOUNTER_THREADS", 4)
# Longer than the idle timeout of the proxies in front (nginx and cloud load balancers
# use 60 s): the proxy must close an idle upstream connection first, or it may send a
# request on a connection gunicorn is closing. Exposed directly to browsers, lower it.
keepalive = _int_env("HITCOUNTER_KEEPALIVE", 75)
# A hit takes milliseconds and Redis calls time out within a second. The worker's loop
# reports to the arbiter whatever its requests do, so this only catches a worker whose
# loop is stuck; it need not cover slow requests.
timeout = 30
# On SIGTERM a worker stops accepting, finishes the requests it has (and answers one more
# on each kept-alive connection with "Connection: close"), then exits. Twenty seconds is
# far more than a hit needs; docker compose's stop_grace_period must be longer.
graceful_timeout = 20
# The app, and with it each Redis client and connection pool, is built in each worker
# after the fork: sockets shared across processes would mix up replies.
preload_app = False
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl):
# two servers of one user would take it from each other, and the container's user has
# no home. Nothing here needs it; signals do the same (HUP reloads, TERM stops).
control_socket_disable = True
# A worker's heartbeat file lives in memory, not on a container's overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# A hit's request line carries a path (up to 512 bytes, three times that when
# percent-encoded) and a whole referrer URL: allow gunicorn's largest line.
limit_request_line = 8190

loglevel = os.environ.get("HITCOUNTER_LOG_LEVEL", "INFO").lower()
# Off unless asked for: on a hit counter an access line is a line per page view of every
# site (volume, and a record of who-read-what timing), and /metrics already counts
# requests by endpoint and status. The logger class skips building lines nobody writes.
accesslog = (
    "-"
    if os.environ.get("HITCOUNTER_ACCESS_LOG", "").strip() in ("1", "true", "yes", "on")
    else None
)
logger_class = "hitcounter.logs.GunicornLogger"
# JsonFormatter builds access lines from an allow-list of fields (no address, no
# User-Agent, no query string); this format only matters to other formatters.
access_log_format = "%(m)s %(U)s %(s)s %(B)s %(M)sms"
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "hitcounter.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    # Everything goes to the root logger's one handler: one stream, one format.
    "root": {"level": loglevel.upper(), "handlers": ["stdout"]},
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": [], "propagate": True},
        # Access lines are INFO: HITCOUNTER_LOG_LEVEL=WARNING turns them off.
        "gunicorn.access": {"level": loglevel.upper(), "handlers": [], "propagate": True},
    },
}

_METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server: Any) -> None:
    """Before the first worker forks: the board where workers tell how many connections
    they hold (worker.py), and an empty metrics directory."""
    if server.cfg.worker_class_str == _SPREADING_WORKER:
        from hitcounter.worker import ConnectionBoard

        server.hitcounter_board = ConnectionBoard()
    directory = os.environ.get(_METRICS_DIR_ENV)
    if not directory:
        if server.cfg.workers < 2:
            return  # one process: its metrics live in memory
        directory = tempfile.mkdtemp(prefix="hitcounter-metrics-")
        # Inherited by every worker; prometheus-client reads it when first imported there.
        os.environ[_METRICS_DIR_ENV] = directory
        server.hitcounter_created_metrics_dir = directory
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    # Files of an earlier run belong to processes that are gone: they would be summed in.
    for stale in path.glob("*.db"):
        stale.unlink()


def pre_fork(server: Any, worker: Any) -> None:
    """In the arbiter: a slot on the connection board for the worker about to fork."""
    board = getattr(server, "hitcounter_board", None)
    if board is not None:
        worker.connection_board, worker.connection_slot = board, board.claim()


def post_worker_init(worker: Any) -> None:
    """Each worker, once its app is built, prepares the stats of sites whose day turned."""
    from hitcounter.warming import start_in_worker

    start_in_worker(worker.wsgi)


def worker_exit(server: Any, worker: Any) -> None:
    """In the exiting worker: publish the metric changes it still holds (see metrics.py)."""
    from hitcounter import metrics

    metrics.publish()


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: free its board slot; drop its live gauges from the metrics (its
    counters stay summed)."""
    board = getattr(server, "hitcounter_board", None)
    if board is not None:
        board.release(getattr(worker, "connection_slot", None))
    if os.environ.get(_METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics directory this configuration created."""
    created = getattr(server, "hitcounter_created_metrics_dir", None)
    if created:
        shutil.rmtree(created, ignore_errors=True)
