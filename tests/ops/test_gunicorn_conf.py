"""The gunicorn configuration: sizes from the CPU count or the environment, and the
metrics directory the workers share."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from prometheus_client import values

from hitcounter import gunicorn_conf


@pytest.fixture
def load_conf(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Load gunicorn_conf afresh under given environment variables."""

    def load(**env: str) -> ModuleType:
        settings = ("WORKERS", "WORKER_CONNECTIONS", "WORKER_CLASS", "THREADS", "KEEPALIVE")
        settings += ("ACCESS_LOG",)
        for name in (f"HITCOUNTER_{setting}" for setting in settings):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(gunicorn_conf)

    yield load
    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


def test_sizes_follow_the_cpus_unless_set(
    load_conf: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    conf = load_conf()  # type: ignore[operator]
    assert (conf.workers, conf.worker_connections) == (6, 1000)
    # "gevent": gunicorn's gevent worker that takes only its share of connections.
    assert conf.worker_class == "hitcounter.worker.SpreadingGeventWorker"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert load_conf().workers == 2  # type: ignore[operator]
    conf = load_conf(
        HITCOUNTER_WORKERS="3", HITCOUNTER_WORKER_CONNECTIONS="50", HITCOUNTER_KEEPALIVE="5"
    )  # type: ignore[operator]
    assert (conf.workers, conf.worker_connections, conf.keepalive) == (3, 50, 5)
    conf = load_conf(HITCOUNTER_WORKER_CLASS="gthread", HITCOUNTER_THREADS="8")  # type: ignore[operator]
    assert (conf.worker_class, conf.threads) == ("gthread", 8)


def test_the_app_is_built_after_the_fork_and_logs_no_visitor() -> None:
    assert gunicorn_conf.preload_app is False
    assert "%(h)s" not in gunicorn_conf.access_log_format
    assert "%(a)s" not in gunicorn_conf.access_log_format


def test_access_lines_are_off_unless_asked_for(load_conf: Any) -> None:
    assert load_conf().accesslog is None  # type: ignore[attr-defined]
    assert load_conf(HITCOUNTER_ACCESS_LOG="1").accesslog == "-"  # type: ignore[attr-defined]
    assert gunicorn_conf.logger_class == "hitcounter.logs.GunicornLogger"


@pytest.fixture
def no_metrics_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset PROMETHEUS_MULTIPROC_DIR, and undo whatever on_starting sets it to."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")


def server(workers: int, worker_class: str = "gthread") -> SimpleNamespace:
    """The arbiter, as the hooks see it."""
    return SimpleNamespace(cfg=SimpleNamespace(workers=workers, worker_class_str=worker_class))


@pytest.mark.usefixtures("no_metrics_dir")
def test_several_workers_get_a_fresh_metrics_directory() -> None:
    arbiter = server(workers=2)
    gunicorn_conf.on_starting(arbiter)
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert directory.is_dir() and not any(directory.iterdir())
    gunicorn_conf.on_exit(arbiter)
    assert not directory.exists()


@pytest.mark.usefixtures("no_metrics_dir")
def test_one_worker_keeps_its_metrics_in_memory() -> None:
    gunicorn_conf.on_starting(server(workers=1))
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_given_directory_is_emptied_of_an_earlier_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_4242.db").write_bytes(b"from a process long gone")
    (directory / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    arbiter = server(workers=4)
    gunicorn_conf.on_starting(arbiter)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]
    gunicorn_conf.on_exit(arbiter)
    assert directory.exists(), "a directory the operator chose is left in place"


def test_a_dead_workers_live_gauges_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    # A value as a worker (this process, standing in for it) writes it in multi-process mode.
    value = values.MultiProcessValue()("gauge", "g", "g", (), (), "", multiprocess_mode="livesum")
    value.set(1)
    assert [p.name for p in tmp_path.iterdir()] == [f"gauge_livesum_{os.getpid()}.db"]
    gunicorn_conf.child_exit(server(workers=2), SimpleNamespace(pid=os.getpid()))
    assert not any(tmp_path.iterdir())


@pytest.mark.usefixtures("no_metrics_dir")
def test_each_spreading_worker_gets_a_board_slot_of_its_own_until_it_is_gone() -> None:
    arbiter = server(workers=2, worker_class=gunicorn_conf.worker_class)
    gunicorn_conf.on_starting(arbiter)
    workers = [SimpleNamespace(pid=n) for n in range(3)]
    for worker in workers[:2]:
        gunicorn_conf.pre_fork(arbiter, worker)
    assert [w.connection_slot for w in workers[:2]] == [0, 1]
    assert workers[0].connection_board is arbiter.hitcounter_board
    gunicorn_conf.child_exit(arbiter, workers[0])
    gunicorn_conf.pre_fork(arbiter, workers[2])  # its successor takes the freed slot
    assert workers[2].connection_slot == 0
    gunicorn_conf.on_exit(arbiter)


@pytest.mark.usefixtures("no_metrics_dir")
def test_other_workers_get_no_board() -> None:
    arbiter = server(workers=2, worker_class="gthread")
    gunicorn_conf.on_starting(arbiter)
    worker = SimpleNamespace(pid=1)
    gunicorn_conf.pre_fork(arbiter, worker)
    assert not hasattr(worker, "connection_slot")
    gunicorn_conf.on_exit(arbiter)
