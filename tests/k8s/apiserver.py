"""A real Kubernetes API server for the tests: etcd + kube-apiserver on 127.0.0.1, free ports, a temp dir.

Binaries come from ``tests/k8s/build.sh`` (built from the Go module proxy, cached per go.mod hash);
this module only checks the cache (``build.sh --check``) and fails with the command to run when it
is stale: a cold build takes ~7 min, longer than a test may.

- Every child runs under ``setpriv --pdeathsig KILL``, so it dies with the test process. The death
  signal fires when the *spawning thread* exits, so children are only ever spawned from the main
  thread: :meth:`KubeServer.spawn_apiserver` (non-blocking) then ``await wait_ready()`` from async tests.
- Auth: a static token of ``system:masters`` (``admin``), and a second user ``tetrapipe-peers``
  with no rights until a test binds a role to it; ``--authorization-mode=RBAC``.
- No controller-manager and no scheduler: pods stay Pending (their ``status.podIP`` is set by a
  status patch) and the ServiceAccount admission plugin is off.
- All waits are bounded.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ADMIN_TOKEN = "tetrapipe-admin-token"
PEERS_TOKEN = "tetrapipe-peers-token"
PEERS_USER = "tetrapipe-peers"
SERVICE_CIDR = "10.96.0.0/16"
_SETPRIV = shutil.which("setpriv")
_RUNNING: set[KubeServer] = set()


class KubeServerError(RuntimeError):
    pass


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_RUNNING):
        server.close()


def binaries() -> Path:
    """The cache dir holding kube-apiserver and etcd ($TETRAPIPE_K8S_BIN, as build.sh); raises when stale."""
    proc = subprocess.run(["bash", str(HERE / "build.sh"), "--check"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise KubeServerError(proc.stderr.strip() or f"build.sh --check exited {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    if threading.current_thread() is not threading.main_thread():
        raise KubeServerError("spawn children from the main thread only (their death signal follows the thread)")
    prefix = [_SETPRIV, "--pdeathsig", "KILL"] if _SETPRIV else []
    with log.open("ab") as out:
        return subprocess.Popen([*prefix, *cmd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def _stop(proc: subprocess.Popen[bytes] | None, kill: bool) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig, wait_s in [*([] if kill else [(signal.SIGTERM, 15.0)]), (signal.SIGKILL, 10.0)]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
            return
    raise KubeServerError(f"pid {proc.pid} survived SIGKILL")


class KubeServer:
    """etcd + kube-apiserver; see the module docstring."""

    def __init__(self, bin_dir: Path | None = None, *, watch_cache: bool = True) -> None:
        self.bin_dir = bin_dir or binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="tetrapipe-k8s-"))
        self.etcd_port, self.peer_port, self.port = free_port(), free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.watch_cache = watch_cache
        self.generation = 0  # etcd data dir number: wipe_etcd() starts a new one
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None
        self._prepare()

    def _prepare(self) -> None:
        (self.dir / "certs").mkdir()
        key = self.dir / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.dir / "sa.pub")],
                       check=True, capture_output=True, timeout=60)
        (self.dir / "tokens.csv").write_text(f"{ADMIN_TOKEN},admin,admin-uid,system:masters\n"
                                             f"{PEERS_TOKEN},{PEERS_USER},peers-uid\n")

    # ------------------------------------------------------------------ processes

    def start(self, timeout: float = 60.0) -> None:
        """Start both (blocking; main thread) and wait until /readyz answers 200."""
        self.spawn_etcd()
        self.wait_etcd(timeout)
        self.spawn_apiserver()
        self.wait_ready_blocking(timeout)

    def spawn_etcd(self) -> None:
        data = self.dir / f"etcd-{self.generation}"
        peer, client = f"http://127.0.0.1:{self.peer_port}", self.etcd_url
        self.etcd = _spawn([str(self.bin_dir / "etcd"), "--name", "default", "--data-dir", str(data),
                            "--listen-client-urls", client, "--advertise-client-urls", client,
                            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                            "--initial-cluster", f"default={peer}", "--unsafe-no-fsync",
                            "--log-level", "warn"], self.dir / "etcd.log")
        _RUNNING.add(self)

    def wait_etcd(self, timeout: float) -> None:
        self._poll(lambda: self._etcd_post("/v3/maintenance/status", {}) is not None, timeout, "etcd", self.etcd)

    def spawn_apiserver(self) -> None:
        args = [str(self.bin_dir / "kube-apiserver"), f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'certs'}", "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={self.dir / 'sa.pub'}",
                f"--service-account-signing-key-file={self.dir / 'sa.key'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}", "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--disable-admission-plugins=ServiceAccount",
                f"--watch-cache={'true' if self.watch_cache else 'false'}", "--profiling=false", "--v=1"]
        self.apiserver = _spawn(args, self.dir / "apiserver.log")
        _RUNNING.add(self)

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz") is not None
        except (OSError, urllib.error.URLError, KubeServerError):
            return False

    def wait_ready_blocking(self, timeout: float = 60.0) -> None:
        self._poll(self.ready, timeout, "kube-apiserver /readyz", self.apiserver)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        import asyncio
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.ready):
            self._check_alive(self.apiserver, "kube-apiserver")
            if time.monotonic() > deadline:
                raise KubeServerError(f"kube-apiserver not ready after {timeout}s\n{self.log_tail('apiserver')}")
            await asyncio.sleep(0.2)

    def _poll(self, check: object, timeout: float, what: str, proc: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + timeout
        while not check():  # type: ignore[operator]
            self._check_alive(proc, what)
            if time.monotonic() > deadline:
                raise KubeServerError(f"{what} not ready after {timeout}s\n{self.log_tail('apiserver')}")
            time.sleep(0.2)

    def _check_alive(self, proc: subprocess.Popen[bytes] | None, what: str) -> None:
        if proc is None or proc.poll() is not None:
            name = "etcd" if "etcd" in what else "apiserver"
            raise KubeServerError(f"{what} exited ({None if proc is None else proc.returncode})\n{self.log_tail(name)}")

    def stop_apiserver(self, kill: bool = True) -> None:
        _stop(self.apiserver, kill)
        self.apiserver = None

    def stop_etcd(self, kill: bool = False) -> None:
        _stop(self.etcd, kill)
        self.etcd = None

    def wipe_etcd(self) -> None:
        """Stop everything and start etcd on a new, empty data dir (the API server must be restarted after)."""
        self.stop_apiserver()
        self.stop_etcd()
        self.generation += 1
        self.spawn_etcd()
        self.wait_etcd(30.0)

    def close(self) -> None:
        _RUNNING.discard(self)
        self.stop_apiserver(kill=True)
        self.stop_etcd(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, name: str = "apiserver", lines: int = 40) -> str:
        path = self.dir / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # ------------------------------------------------------------------ etcd

    def _etcd_post(self, path: str, body: dict[str, object]) -> dict[str, Any] | None:
        req = urllib.request.Request(self.etcd_url + path, data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except (OSError, urllib.error.URLError):
            return None

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision (physically); returns the revision."""
        doc = self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        if doc is None:
            raise KubeServerError("etcd range failed")
        revision = int(doc["header"]["revision"])
        if self._etcd_post("/v3/kv/compaction", {"revision": revision, "physical": True}) is None:
            raise KubeServerError("etcd compaction failed")
        return revision

    # ------------------------------------------------------------------ API (blocking helpers)

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "certs" / "apiserver.crt"))
        return ctx

    def request(self, method: str, path: str, body: object = None, *, token: str = ADMIN_TOKEN,
                content_type: str = "application/json") -> dict[str, Any] | None:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, timeout=10, context=self._ssl()) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise KubeServerError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        try:
            return json.loads(raw)
        except ValueError:
            return {"raw": raw.decode(errors="replace")}

    def kubeconfig(self, token: str = PEERS_TOKEN) -> Path:
        """A kubeconfig file for ``token`` (default: the least-privileged peers user)."""
        path = self.dir / f"kubeconfig-{token[:12]}"
        ca = base64.b64encode((self.dir / "certs" / "apiserver.crt").read_bytes()).decode()
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "u"}}]}))
        return path
