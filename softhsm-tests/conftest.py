"""End-to-end fixtures: one real daemon on a real SoftHSM token for the whole session.

`pcad quickstart` lays out a temporary folder (token, TLS material, config); extra `[[access]]`
rules and client certificates are added before the daemon starts. Tests restart or kill the
daemon through `pcad.daemon` (see `Daemon`). Each test module works under its own appkey.
"""

import os
import re
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

import pcadtest
from pcadtest import Api, issuer_body, KEY_CASES, key_id

REPO = Path(__file__).resolve().parent.parent
PCAD_BIN = Path(os.environ.get("PCAD_BIN", REPO / "target" / "release" / "pcad")).resolve()
START_TIMEOUT = float(os.environ.get("PCAD_START_TIMEOUT", "30"))

# Identities beyond quickstart's pcad-admin / pcad-viewer: name -> (appkey, role) or None.
EXTRA_IDENTITIES = {
    "tenant-a-admin": ("tenant-a", "ADMIN"),
    "tenant-a-viewer": ("tenant-a", "VIEWER"),
    "tenant-b-admin": ("tenant-b", "ADMIN"),
    "norole": None,
}

_DAEMONS = []


def free_ports(n):
    """`n` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Daemon:
    """The `pcad serve` process. Its stdout and stderr go to `log`, shown when a test fails."""

    def __init__(self, config, log, api_port, public_port):
        self.config = config
        self.log = log
        self.api_port = api_port
        self.public_port = public_port
        self.proc = None
        self.starts = 0

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=START_TIMEOUT):
        """Starts the daemon and waits until `/healthz` answers 200 and the API port listens."""
        assert not self.running, "daemon already running"
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            env = dict(os.environ)
            env.pop("CREDENTIALS_DIRECTORY", None)  # the config's pin_file must be what counts
            self.proc = subprocess.Popen(
                [str(PCAD_BIN), "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        healthz = f"http://127.0.0.1:{self.public_port}/healthz"
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"pcad serve exited with {code}:\n{self.log_tail()}")
            try:
                if requests.get(healthz, timeout=1).status_code == 200 and port_open(
                    self.api_port
                ):
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(
                    f"pcad serve not healthy on {healthz} within {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout=20):
        """SIGTERM, then wait; SIGKILL if it does not exit in time. Returns the exit status."""
        if not self.running:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"pcad serve ignored SIGTERM for {timeout}s:\n{self.log_tail()}")

    def kill9(self):
        """`kill -9`: no chance to flush or clean up."""
        if self.running:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def log_tail(self, lines=40):
        try:
            text = Path(self.log).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Pcad:
    """The session's quickstart folder and daemon."""

    def __init__(self, directory, api_port, public_port, metrics_port, quickstart_output):
        self.dir = directory
        self.api_port = api_port
        self.public_port = public_port
        self.metrics_port = metrics_port
        self.quickstart_output = quickstart_output
        self.tls = directory / "tls"
        self.ca_pem = str(self.tls / "ca.pem")
        self.config = directory / "pcad.toml"
        self.softhsm_conf = directory / "softhsm2.conf"
        self.api_url = f"https://localhost:{api_port}"
        self.public_url = f"http://127.0.0.1:{public_port}"
        self.daemon = Daemon(self.config, directory / "pcad.log", api_port, public_port)

    def client_cert(self, identity):
        """(cert, key) paths of a client identity: "admin", "viewer", or a minted name."""
        name = {"admin": "admin", "viewer": "viewer", "pcad-admin": "admin",
                "pcad-viewer": "viewer"}.get(identity, identity)
        pem, key = self.tls / f"{name}.pem", self.tls / f"{name}.key"
        assert pem.exists(), f"no client certificate for {identity!r}"
        return (str(pem), str(key))

    def pin(self):
        return (self.dir / "hsm-pin").read_text().strip()

    def api(self, identity="admin", appkey="demo", edition="ca-stores"):
        return Api(self, identity, appkey, edition)


def mint_cert(tls, name, cn, *, ca="ca", eku="clientAuth", days=30):
    """A P-256 client certificate `tls/{name}.pem|.key` for `cn`, signed by `tls/{ca}.pem|.key`."""
    key, csr, pem = tls / f"{name}.key", tls / f"{name}.csr", tls / f"{name}.pem"
    ext = tls / f"{name}.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        f"extendedKeyUsage = {eku}\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    pcadtest.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", f"/CN={cn}",
                  "-out", csr])
    pcadtest.run(["openssl", "x509", "-req", "-in", csr, "-CA", tls / f"{ca}.pem", "-CAkey",
                  tls / f"{ca}.key", "-set_serial", "0x" + secrets.token_hex(16), "-days",
                  str(days), "-sha256", "-extfile", ext, "-out", pem])
    os.chmod(key, 0o600)
    csr.unlink()
    ext.unlink()
    return pem, key


def mint_rogue_ca(tls):
    """A CA the daemon does not trust, and a client certificate claiming CN=pcad-admin from it."""
    key, pem = tls / "rogue-ca.key", tls / "rogue-ca.pem"
    pcadtest.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj",
                  "/CN=pcad quickstart CA", "-days", "30", "-addext",
                  "basicConstraints=critical,CA:TRUE", "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign", "-out", pem])
    mint_cert(tls, "rogue-admin", "pcad-admin", ca="rogue-ca")


def prepare_config(config, metrics_port):
    """Moves the metrics listener to a free port and appends the extra access rules."""
    text = config.read_text()
    metrics_line = f'listen = "127.0.0.1:{metrics_port}"'
    section = re.search(r"(?ms)^\[metrics\]\s*$(.*?)(?=^\[|\Z)", text)
    if section and re.search(r'(?m)^listen\s*=.*$', section.group(1)):
        body = re.sub(r'(?m)^listen\s*=.*$', metrics_line, section.group(1), count=1)
        text = text[: section.start(1)] + body + text[section.end(1):]
    elif section:
        text = text[: section.end(0)] + f"\n{metrics_line}\n" + text[section.end(0):]
    else:
        text += f"\n[metrics]\n{metrics_line}\n"
    rules = [
        f'\n[[access]]\nidentity = "{name}"\nappkey = "{appkey}"\nrole = "{role}"\n'
        for name, spec in EXTRA_IDENTITIES.items()
        if spec is not None
        for appkey, role in [spec]
    ]
    text += "\n# Added by softhsm-tests/conftest.py" + "".join(rules)
    config.write_text(text)


@pytest.fixture(scope="session")
def pcad(tmp_path_factory):
    if not PCAD_BIN.exists():
        pytest.exit(f"{PCAD_BIN} not found: build it (cargo build --release) or set PCAD_BIN", 2)
    directory = tmp_path_factory.mktemp("pcad") / "quickstart"
    api_port, public_port, metrics_port = free_ports(3)
    proc = subprocess.run(
        [str(PCAD_BIN), "quickstart", "--dir", str(directory), "--api-port", str(api_port),
         "--public-port", str(public_port)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"pcad quickstart failed:\n{proc.stdout}\n{proc.stderr}"
    prepare_config(directory / "pcad.toml", metrics_port)
    tls = directory / "tls"
    for name in EXTRA_IDENTITIES:
        mint_cert(tls, name, name)
    mint_rogue_ca(tls)
    mint_cert(tls, "server-eku-admin", "pcad-admin", eku="serverAuth")

    env = Pcad(directory, api_port, public_port, metrics_port, proc.stdout)
    _DAEMONS.append(env.daemon)
    env.daemon.start()
    yield env
    env.daemon.stop()


@pytest.fixture(scope="module")
def appkey(request):
    """A fresh appkey per test module, so modules never see each other's objects."""
    stem = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    return f"{stem}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def admin(pcad, appkey):
    return Api(pcad, "admin", appkey)


@pytest.fixture(scope="module")
def viewer(pcad, appkey):
    return Api(pcad, "viewer", appkey)


@pytest.fixture
def fresh(pcad):
    """An ADMIN client on a brand-new appkey (exact counts in lists)."""
    return Api(pcad, "admin", f"fresh-{secrets.token_hex(4)}")


@pytest.fixture(scope="session")
def issuer_set(pcad):
    """One store holding a ROOT for every keyInfo and a few INTERMEDIATEs below them; created once
    (RSA-4096 keygen in SoftHSM takes seconds). Returns a dict with `api`, `store`, `roots`
    (key_id -> detail), `intermediates` (name -> (detail, parent detail, request))."""
    api = Api(pcad, "admin", f"issuers-{secrets.token_hex(3)}")
    store = api.create_store("issuer set", description="every key type")
    sid = store["caStoreId"]
    roots, requests_by_id = {}, {}
    for alg, size, sig in KEY_CASES:
        kid = key_id(alg, size)
        max_depth = {"EC-256": -1, "EC-224": 0}.get(kid, 2)
        body = issuer_body(alg, size, sig, max_depth=max_depth, ttl=10 * 365 * 86400)
        created = api.create_issuer(sid, body)
        roots[kid] = api.cert(sid, created["certId"])
        requests_by_id[created["certId"]] = body
    intermediates = {}
    plan = [
        # name, parent (root key id or intermediate name), alg, size, sig, maxDepth
        ("ec256-under-rsa2048", "RSA-2048", "EC", 256, "SHA256_WITH_ECDSA", 0),
        ("rsa2048-under-ec384", "EC-384", "RSA", 2048, "SHA256_WITH_RSA", 1),
        ("ed25519-under-rsa2048-int", "rsa2048-under-ec384", "ED25519", 256, "ED25519", 0),
        ("ed25519-under-ed25519", "ED25519", "ED25519", 256, "ED25519", 0),
        ("ec521-under-ec256", "EC-256", "EC", 521, "SHA512_WITH_ECDSA", -1),
    ]
    for name, parent_name, alg, size, sig, max_depth in plan:
        parent = roots.get(parent_name) or intermediates[parent_name][0]
        level = 2 if parent_name in intermediates else 1  # a child must not outlive its parent
        body = issuer_body(alg, size, sig, kind="INTERMEDIATE", parent=parent["certId"],
                           max_depth=max_depth, ttl=(3 - level) * 365 * 86400)
        created = api.create_issuer(sid, body)
        intermediates[name] = (api.cert(sid, created["certId"]), parent, body)
        requests_by_id[created["certId"]] = body
    return {"api": api, "store": store, "roots": roots, "intermediates": intermediates,
            "requests": requests_by_id}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _DAEMONS:
        report.sections.append(("pcad daemon log (tail)", _DAEMONS[-1].log_tail()))
