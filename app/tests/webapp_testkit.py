"""Real servers for the app's tests: PostgreSQL, Azurite, and a TCP proxy that can cut them.

Everything listens on 127.0.0.1 only, on ports picked free at start, with data in a fresh
temporary directory, and is stopped at the end of the session.
"""

from __future__ import annotations

import base64
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
TEST_MAX_UPLOAD_BYTES = 4096  # small, so size-limit tests move little data


def missing(reason: str):
    """Skip a test whose server can't be had, except in CI, where that is a failure."""
    message = f"{reason} (install with: sudo bash app/scripts/install-test-deps.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_tail(log)}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {LOOPBACK}:{port} after {timeout}s: {_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-2000:]


def blob_names(container_client) -> list[str]:
    return sorted(b.name for b in container_client.list_blobs())


# --- freezing a server -----------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc (PostgreSQL's backends and helpers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a server and everything it started; SIGCONT them afterwards, whatever happens.

    A stopped server is the hard case: its kernel still accepts connections and acknowledges
    data (and TCP keepalives), but nothing ever answers. A closed port fails fast; this doesn't.
    """
    os.kill(pid, signal.SIGSTOP)  # first, so it forks nothing new meanwhile
    stopped = [pid]
    try:
        for child in _descendants(pid):
            try:
                os.kill(child, signal.SIGSTOP)
                stopped.append(child)
            except ProcessLookupError:
                pass
        yield
    finally:
        for p in stopped:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


# --- HTTP against a real server ----------------------------------------------------------------


def http(method: str, url: str, *, body: bytes | None = None, headers: dict | None = None, timeout: float = 30):
    """(status, body, seconds) without raising on 4xx/5xx."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read(), time.monotonic() - started
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - started


def multipart(data: bytes, name: str) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Gunicorn:
    """gunicorn with the image's config file and entry point, bound to loopback."""

    def __init__(self, env: dict[str, str], log: Path, *, workers: int = 2, args=()):
        self.port = free_port()
        self._args = list(args)
        self.base = f"http://{LOOPBACK}:{self.port}"
        # The master's liveness listener (gunicorn.conf.py).
        self.health_port = free_port()
        self.health = f"http://{LOOPBACK}:{self.health_port}/healthz"
        self.log = log
        self._env = {**os.environ, "HEALTH_PORT": str(self.health_port), **env}
        self._workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self, *, wait_ready: bool = True) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "--config",
                    "gunicorn.conf.py",
                    "--bind",
                    f"{LOOPBACK}:{self.port}",  # the image binds all interfaces; tests stay on loopback
                    "--workers",
                    str(self._workers),
                    *self._args,
                    "webapp.wsgi:app",
                ],
                cwd=APP_DIR,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, 30, self.proc, self.log)
        if wait_ready:
            self.wait_ready(30)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http("GET", self.base + "/readyz", timeout=5)[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"gunicorn not ready after {timeout}s: {self.output()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, wait: bool = True) -> None:
        """SIGTERM (gunicorn's graceful stop). With ``wait=False`` the exit (half a second or
        so) is waited for at the end of the session (``Gunicorn.reap``), not by the test."""
        if self.alive():
            self.proc.terminate()
            if not wait:
                Gunicorn._stopping.append(self.proc)
                return
            _wait_or_kill(self.proc)

    _stopping: list[subprocess.Popen] = []

    @classmethod
    def reap(cls) -> None:
        while cls._stopping:
            _wait_or_kill(cls._stopping.pop())


def _wait_or_kill(proc: subprocess.Popen) -> None:
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def write_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 (EC: instant to generate)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o600)  # PostgreSQL refuses a key others can read
    return cert_path, key_path


# --- PostgreSQL ------------------------------------------------------------------------------


def find_pg_bindir() -> Path | None:
    """Debian keeps server binaries out of PATH, under /usr/lib/postgresql/<major>/bin."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


class PostgresServer:
    """A throw-away cluster: initdb into a temp dir, pg_ctl start on a free loopback port.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres``
    system user that Debian's package creates, and every server command runs through
    runuser. Password authentication (scram) is on, so the app signs in as it will in Azure.
    """

    ADMIN = "admin"
    APP_ROLE = "webapp"
    APP_DB = "webapp"

    def __init__(self):
        self.bindir = find_pg_bindir()
        if self.bindir is None:
            missing("PostgreSQL server binaries (pg_ctl, initdb) not found")
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root, and there is no 'postgres' system user to own the test cluster")
            self.run_as = "postgres"
            if shutil.which("runuser") is None:
                missing("running as root and runuser (util-linux) is missing")
        self.port = free_port()
        self.admin_password = secrets.token_urlsafe(16)
        self.app_password = secrets.token_urlsafe(16)
        # Directly under the system temp dir: pytest's own tmp dirs are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="webapp-pg-"))
        self.datadir = self.root / "data"
        self.log = self.root / "server.log"

    @property
    def pid(self) -> int:
        """The postmaster's process ID (first line of postmaster.pid)."""
        return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])

    def _cmd(self, *args: str) -> list[str]:
        cmd = list(args)
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.admin_password + "\n")
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        subprocess.run(
            self._cmd(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.ADMIN,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
        cert, key = self._write_tls_files()
        # Loopback TCP only, no Unix socket; TLS on, as Azure requires it for Entra sign-in;
        # durability off: the cluster lives for one session.
        options = (
            f"-c listen_addresses={LOOPBACK} -c port={self.port} -c unix_socket_directories='' "
            f"-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            # Not UTC, so a test notices if the app shows times in the server's zone.
            "-c timezone=America/St_Johns"
        )
        subprocess.run(
            self._cmd(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-o", options, "-w", "start"
            ),
            check=True,
            capture_output=True,
        )
        self.create_role(self.APP_ROLE, self.app_password)
        self.create_database(self.APP_DB)

    def _write_tls_files(self) -> tuple[Path, Path]:
        cert_path, key_path = write_self_signed_cert(self.root)
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            for p in (cert_path, key_path):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        return cert_path, key_path

    def create_role(self, role: str, password: str) -> None:
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )

    def set_password(self, role: str, password: str) -> None:
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))

    def stop(self) -> None:
        if self.datadir.exists():
            subprocess.run(
                self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"),
                capture_output=True,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(
        self,
        dbname: str,
        *,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        schema: str | None = None,
    ) -> str:
        user = user or self.APP_ROLE
        password = self.app_password if password is None else password
        # A libpq URL can set the search path: each test gets its own schema this way. No
        # TLS: the app opens a connection per step, and the handshake would be a quarter of
        # the suite's database time. The Entra tests sign in over TLS, as in Azure.
        query = "?sslmode=disable" + (f"&options=-csearch_path%3D{schema}" if schema else "")
        return f"postgresql://{user}:{password}@{LOOPBACK}:{port or self.port}/{dbname}{query}"

    def admin(self, dbname: str = "postgres", schema: str | None = None):
        import psycopg

        url = self.url(dbname, user=self.ADMIN, password=self.admin_password, schema=schema)
        return psycopg.connect(url, autocommit=True)

    def create_schema(self, dbname: str, schema: str, owner: str | None = None) -> None:
        """A fresh schema owned by the app's role: as isolated as a database, 100x cheaper."""
        from psycopg import sql

        with self.admin(dbname) as conn:
            conn.execute(
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                    sql.Identifier(schema), sql.Identifier(owner or self.APP_ROLE)
                )
            )

    def create_database(self, dbname: str) -> None:
        """A fresh database owned by the app's (non-superuser) role, as in Azure."""
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(self.APP_ROLE))
            )


# --- Azurite ---------------------------------------------------------------------------------


class AzuriteServer:
    """Azurite's Blob service only, in memory, with a random account key for this session."""

    def __init__(self):
        self.bin = APP_DIR / "node_modules" / ".bin" / "azurite-blob"
        if shutil.which("node") is None:
            missing("node is not installed (Azurite runs on Node.js)")
        if not self.bin.exists():
            missing(f"Azurite is not installed at {self.bin} (npm ci --prefix app)")
        self.port = free_port()
        self.account = "webapptest"
        self.key = base64.b64encode(secrets.token_bytes(32)).decode()
        self.root = Path(tempfile.mkdtemp(prefix="webapp-azurite-"))
        self.log = self.root / "azurite.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.launch()
        self.wait()

    def launch(self) -> None:
        """Start the process without waiting: PostgreSQL can initdb meanwhile."""
        env = dict(os.environ, AZURITE_ACCOUNTS=f"{self.account}:{self.key}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bin),
                    "--blobHost",
                    LOOPBACK,
                    "--blobPort",
                    str(self.port),
                    "--inMemoryPersistence",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--disableTelemetry",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )

    def wait(self) -> None:
        wait_for_port(self.port, 30, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def connection_string(self, port: int | None = None) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint=http://{LOOPBACK}:{port or self.port}/{self.account};"
        )


# --- fault injection -------------------------------------------------------------------------


class FaultProxy:
    """A TCP proxy on loopback in front of a real server, for outages on demand.

    ``cut()`` closes every open connection and makes new ones close at once, as when a
    server dies or the network drops; ``restore()`` undoes it. ``on_request`` is called with
    each chunk a client sends, before it is forwarded, so a test can trigger a cut at an
    exact point of a protocol exchange (for instance when a blob PUT starts).
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self.on_request: Callable[[bytes], None] | None = None
        self._closed = False
        threading.Thread(target=self._accept_loop, name=f"proxy-{self.port}", daemon=True).start()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._open = self._open, set()
        for s in sockets:
            _hard_close(s)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._cut
            if refused:
                _hard_close(client)
                continue
            try:
                upstream = socket.create_connection((LOOPBACK, self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _hard_close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client and self.on_request is not None:
                    self.on_request(data)
                if self._cut:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with self._lock:
                    self._open.discard(s)
                _hard_close(s)


def _hard_close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


# --- an Entra token endpoint stand-in ----------------------------------------------------------


class FakeEntra:
    """Entra's token endpoint on loopback, over TLS (azure-identity insists on https).

    Point ``AZURE_AUTHORITY_HOST`` at ``authority`` and trust ``ca_file`` (for instance with
    ``REQUESTS_CA_BUNDLE``, which azure-core's requests transport honours). It answers every
    OAuth token request with ``token`` valid for ``lifetime`` seconds. ``freeze()`` makes it
    a hung endpoint: connections are accepted, TLS is negotiated and the request read, and
    then nothing is ever answered; connections held so far stay open unanswered after
    ``thaw()`` too, as a hung service behind a TLS-terminating load balancer would leave
    them. (A hang before the TLS handshake is bounded by the connect timeout already.)
    Not modelled: the OAuth request itself is not checked (no client assertion or secret
    validation), and there is no discovery document (workload identity's credential does
    not fetch one).
    """

    def __init__(self, directory: Path, token: str, lifetime: int = 3600):
        import ssl

        self.token = token
        self.lifetime = lifetime
        self.requests = 0
        cert, key = write_self_signed_cert(directory)
        self.ca_file = str(cert)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(cert, key)
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self.authority = f"https://{LOOPBACK}:{self.port}"
        self._frozen = False
        self._held: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept_loop, name=f"entra-{self.port}", daemon=True).start()

    def freeze(self) -> None:
        self._frozen = True

    def thaw(self) -> None:
        self._frozen = False

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for s in self._held:
            _hard_close(s)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        import json

        try:
            conn.settimeout(5)
            tls = self._tls.wrap_socket(conn, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(body) < length:
                body += tls.recv(65536)
            if self._frozen:  # read, never answered
                self._held.append(tls)
                return
            self.requests += 1
            payload = json.dumps(
                {"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime,
                 "access_token": self.token}
            ).encode()
            tls.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            tls.close()
        except OSError:
            _hard_close(conn)


# --- a storage server stand-in that answers slowly ----------------------------------------------


class SlowHTTPServer:
    """Plain HTTP on loopback whose every answer is written by ``respond(socket)`` (a test
    supplies it: trickle bytes, stop half-way ...). Used as a Blob endpoint that accepts
    requests and answers too slowly or incompletely, which a frozen server can't show."""

    def __init__(self, respond: Callable[[socket.socket], None]):
        self.respond = respond
        self.requests = 0
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, name=f"slow-{self.port}", daemon=True).start()

    def close(self) -> None:
        """Stop listening and drop the connections still being answered: a client thread the
        test gave up on (a trickled answer runs ~11 s) then ends now instead of keeping its
        process (an xdist worker) from exiting until the trickle is over."""
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets, self._open = self._open, set()
        for s in sockets:
            _hard_close(s)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    _hard_close(conn)
                    return
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                self.requests += 1
                self.respond(conn)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
            _hard_close(conn)
