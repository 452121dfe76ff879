"""Helpers for test_scaleout.py (issue 15: publishing to Redis, stateless responders).

Real components only: `redis-server` (standalone, or three primaries in cluster mode) started
by the tests on free loopback ports with no persistence, a private `pcad serve` with
`[publish] redis` set, and `pcad responder` processes.
"""

import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

import conftest
from conftest import Pcad, free_ports, prepare_config


def _bindable(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def redis_ports(n):
    """`n` free ports whose cluster bus ports (+10000) are free too."""
    out = []
    while len(out) < n:
        p = random.randint(20000, 40000)
        if p not in out and _bindable(p) and _bindable(p + 10000):
            out.append(p)
    return out


def wait_until(cond, timeout, what, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class Redis:
    """One `redis-server` on 127.0.0.1 without persistence (a restart comes back empty)."""

    def __init__(self, directory, port=None, cluster=False):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or redis_ports(1)[0]
        self.cluster = cluster
        self.proc = None
        self.log = self.dir / f"redis-{self.port}.log"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0" if not self.cluster else \
            f"redis://127.0.0.1:{self.port}"

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
                "--logfile", str(self.log)]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file",
                     f"nodes-{self.port}.conf", "--cluster-node-timeout", "2000"]
            nodes = self.dir / f"nodes-{self.port}.conf"
            if nodes.exists():
                nodes.unlink()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: self.cli("PING", check=False).strip() == "PONG", 10,
                   f"redis-server on {self.port}")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def cli(self, *args, check=True, raw=False):
        cmd = ["redis-cli", "-p", str(self.port)] + (["-c"] if self.cluster else []) + \
            (["--no-raw"] if not raw else ["--raw"]) + [str(a) for a in args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def info_memory(self):
        text = self.cli("INFO", "memory", raw=True)
        return int(re.search(r"used_memory:(\d+)", text).group(1))


def start_cluster(directory, n=3):
    """`n` primaries in cluster mode, joined with `redis-cli --cluster create`."""
    nodes = [Redis(Path(directory) / f"node{i}", port=p, cluster=True).start()
             for i, p in enumerate(redis_ports(n))]
    addrs = [f"127.0.0.1:{r.port}" for r in nodes]
    proc = subprocess.run(["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas",
                           "0", "--cluster-yes"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for r in nodes:
        wait_until(lambda r=r: "cluster_state:ok" in r.cli("CLUSTER", "INFO", raw=True), 20,
                   f"cluster state ok on {r.port}")
    return nodes


class Responder:
    """A `pcad responder` process."""

    def __init__(self, directory, redis_urls, port=None, extra_args=(), env=None):
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_ports(1)[0]
        self.urls = [redis_urls] if isinstance(redis_urls, str) else list(redis_urls)
        self.log = self.dir / f"responder-{self.port}.log"
        self.proc = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_healthy=True):
        args = [str(conftest.PCAD_BIN), "responder", "--listen", f"127.0.0.1:{self.port}"]
        for u in self.urls:
            args += ["--redis", u]
        args += self.extra_args
        env = dict(os.environ, RUST_LOG="info", **self.extra_env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        wait_until(lambda: conftest.port_open(self.port), 10, "responder listening")
        if wait_healthy:
            wait_until(lambda: self.health()[0] == 200, 20, "responder healthy")
        return self

    def health(self):
        r = requests.get(f"{self.base}/healthz", timeout=5)
        return r.status_code, r.json()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def private_appliance(tmp_path_factory, name, redis_urls):
    """`pcad quickstart` into a fresh folder, `[publish] redis` set; returns a started `Pcad`."""
    directory = tmp_path_factory.mktemp(name) / "quickstart"
    api_port, public_port, metrics_port = free_ports(3)
    proc = subprocess.run(
        [str(conftest.PCAD_BIN), "quickstart", "--dir", str(directory), "--api-port",
         str(api_port), "--public-port", str(public_port)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"pcad quickstart failed:\n{proc.stdout}\n{proc.stderr}"
    prepare_config(directory / "pcad.toml", metrics_port)
    set_publish(directory / "pcad.toml", redis_urls)
    env = Pcad(directory, api_port, public_port, metrics_port, proc.stdout)
    conftest._DAEMONS.append(env.daemon)
    env.daemon.start()
    return env


def set_publish(config, redis_urls, password_file=None):
    """Writes (or replaces) the `[publish]` table at the end of the config."""
    text = Path(config).read_text()
    text = re.sub(r"(?ms)^\[publish\].*\Z", "", text).rstrip() + "\n\n[publish]\n"
    if isinstance(redis_urls, str):
        text += f'redis = "{redis_urls}"\n'
    else:
        text += "redis = [" + ", ".join(f'"{u}"' for u in redis_urls) + "]\n"
    if password_file:
        text += f'password_file = "{password_file}"\n'
    Path(config).write_text(text)


def tls_redis(directory, password):
    """A `redis-server` that only speaks TLS (certificate for IP 127.0.0.1 from a CA made here)
    and requires `password`. Returns (Redis, CA path)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (d / n for n in ["ca.key", "ca.pem", "s.key", "s.csr", "s.pem"])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key, "-subj",
                    "/CN=redis test CA", "-days", "2", "-out", ca], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj",
                    "/CN=127.0.0.1", "-out", csr], check=True, capture_output=True)
    ext = d / "s.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
                    "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt], check=True,
                   capture_output=True)
    os.chmod(key, 0o644)
    r = TlsRedis(d, ca, crt, key, password)
    return r.start(), ca


class TlsRedis(Redis):
    def __init__(self, directory, ca, crt, key, password):
        super().__init__(directory)
        self.ca, self.crt, self.key, self.password = ca, crt, key, password

    @property
    def url(self):
        return f"rediss://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(self.crt), "--tls-key-file", str(self.key),
             "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
             "--requirepass", self.password, "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.cli("PING", check=False).strip() == "PONG", 10,
                   f"TLS redis-server on {self.port}")
        return self

    def cli(self, *args, check=True, raw=False):
        cmd = ["redis-cli", "-p", str(self.port), "--tls", "--cacert", str(self.ca),
               "--no-auth-warning", "-a", self.password, "--raw" if raw else "--no-raw"] + \
            [str(a) for a in args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc.stdout


def ocsp_request(cert, issuer, algorithm=None):
    return ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, algorithm or hashes.SHA1()).build().public_bytes(
        __import__("cryptography.hazmat.primitives.serialization",
                   fromlist=["Encoding"]).Encoding.DER)


def cert_status(body):
    """'good' / 'revoked' / 'unknown', or the unsigned status name ('unauthorized', ...)."""
    r = ocsp.load_der_ocsp_response(body)
    if r.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return r.response_status.name.lower()
    return r.certificate_status.name.lower()


def post(base, path, der, timeout=5):
    return requests.post(f"{base}{path}", data=der, timeout=timeout,
                         headers={"Content-Type": "application/ocsp-request"})


def percentile(values, p):
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100 * (len(v) - 1)))))
    return v[k]
