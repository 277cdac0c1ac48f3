"""gunicorn settings for the container; command-line flags still override them."""

import os


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and other
    # scripts' digits (which int() reads), neither of which an operator means.
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError(f"{name}={raw!r} is invalid: expected a whole number >= 1")
    return int(raw)


def _tcp_port(name: str, default: int) -> int:
    port = _positive_int(name, default)
    if port > 65535:
        raise ValueError(f"{name}={port} is invalid: expected a TCP port, 1-65535")
    return port


_port = _tcp_port("PORT", 8000)
# Liveness has a listener of its own (see when_ready below).
_health_port = _tcp_port("HEALTH_PORT", 8081)
if _health_port == _port:
    raise ValueError(f"HEALTH_PORT={_health_port} is invalid: expected a port other than PORT ({_port})")

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


def on_starting(server):
    # The app sizes its dependency slots from the threads each worker really runs: this is
    # the value after command-line flags (--threads), which the workers inherit.
    os.environ["GUNICORN_THREADS"] = str(server.cfg.threads)


_liveness = None


def when_ready(server):
    """Answer GET /healthz on HEALTH_PORT from the master process, on its own threads.

    Not from the workers' request threads: gthread reads request bodies and writes responses
    on those threads, so a few clients trickling an upload can hold all of them, whatever the
    app does, and a liveness probe queued behind them would restart a healthy pod. The master
    is what supervises the workers (it replaces one that dies or stops heartbeating for
    ``timeout``, and exits if they cannot boot), so its answer is what liveness should mean.
    """
    global _liveness
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Liveness(BaseHTTPRequestHandler):
        timeout = 5  # a slow client here holds one of these short-lived threads, no more

        def do_GET(self):
            ok = self.path.split("?", 1)[0] == "/healthz"
            body = b'{"status":"ok"}\n' if ok else b'{"error":"not found"}\n'
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # the kubelet polls every few seconds: no access log
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 64

    # The host of the main listener (all interfaces in the image, loopback in the tests).
    host = next((a[0] for a in server.cfg.address if isinstance(a, tuple)), "0.0.0.0")
    _liveness = Server((host, _health_port), Liveness)
    threading.Thread(target=_liveness.serve_forever, name="liveness", daemon=True).start()
    server.log.info("Liveness at: http://%s:%d/healthz", host, _health_port)


def post_fork(server, worker):
    # The worker inherited the master's liveness socket; only the master answers on it.
    if _liveness is not None:
        _liveness.socket.close()
