"""gunicorn settings for the container; command-line flags still override them."""

import os


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and other
    # scripts' digits (which int() reads), neither of which an operator means.
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} is invalid: expected a whole number >= 1")
    return int(raw)


_port = _positive_int("PORT", 8000)
if _port > 65535:
    raise ValueError(f"PORT={_port} is invalid: expected a TCP port, 1-65535")

# All interfaces inside the pod: the Service and the kubelet's probes connect from outside it.
bind = [f"0.0.0.0:{_port}"]
workers = _positive_int("WEB_CONCURRENCY", 2)
# Threads: requests mostly wait on Blob storage and PostgreSQL.
worker_class = "gthread"
threads = _positive_int("GUNICORN_THREADS", 8)
timeout = 120  # an upload of the largest allowed file over a slow link
graceful_timeout = 25  # below Kubernetes' default 30-s termination grace period
keepalive = 5
# Heartbeat files on tmpfs: the image's file system may be read-only or slow overlay.
worker_tmp_dir = "/dev/shm"
# No runtime control socket: Kubernetes manages the process, and the image's user has no
# writable home to put the socket in.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
# Client, request line, status, bytes and duration in milliseconds.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
