"""gunicorn with uvicorn workers; every knob comes from the environment."""
import os
import shutil

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
timeout = int(os.environ.get("WORKER_TIMEOUT_S", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT_S", "20"))
keepalive = 5
accesslog = None  # nginx writes access logs; metrics count every request
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# gunicorn's control socket would live under $HOME (/nonexistent for the app user): not needed.
control_socket_disable = True
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # nosec B108 # /dev/shm is gunicorn's documented worker heartbeat dir, not a temp file we create


def on_starting(server):
    # A stale multiprocess dir from a previous run would double-count: start empty.
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if d:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
