"""A private pcad daemon for tests that break its HSM, mangle its files or start it wrongly
(test_hsm_outage.py, test_key_hygiene.py, test_tls_posture.py), kept apart from the shared
session daemon of conftest.py (whose files belong to another engineer).

- `Lab`: its own `pcad quickstart` folder, ports and `pcad serve` process. By default the config's
  PKCS#11 module is a fault-injection shim around SoftHSM (`build_shim`): a pass-through that,
  while `lab.fault_file` exists, answers every call (except C_Initialize, C_Finalize, C_GetInfo
  and C_GetFunctionList) with the CKR_* code written in that file. It also logs each C_Login
  (pid and CKR_* result) to `lab.login_log`, so tests can count login attempts.
- OCSP helpers (request building, GET/POST, result classification, signature checks).
- Load generators (OCSP, issuance) recording every outcome with its time.
"""

import base64
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp

import pcadtest
from conftest import free_ports, port_open
from pcadtest import Api, issuer_body, ok, unique

REPO = Path(__file__).resolve().parent.parent
PCAD_BIN = Path(os.environ.get("PCAD_BIN", REPO / "target" / "release" / "pcad")).resolve()
SOFTHSM = pcadtest.SOFTHSM_MODULE

# CKR_* codes used by the tests.
CKR = {
    "GENERAL_ERROR": 0x05,
    "DEVICE_ERROR": 0x30,
    "DEVICE_REMOVED": 0x32,
    "MECHANISM_INVALID": 0x70,
    "PIN_INCORRECT": 0xA0,
    "SESSION_HANDLE_INVALID": 0xB3,
    "TOKEN_NOT_PRESENT": 0xE0,
}

SHIM_C = r"""
/* PKCS#11 pass-through to REAL_MODULE that fails on demand (pcad outage tests).
 * While FAULT_FILE exists, every call except C_Initialize, C_Finalize, C_GetInfo and
 * C_GetFunctionList returns the CKR_* code written in it (default CKR_DEVICE_REMOVED).
 * Every C_Login is logged to LOGIN_LOG as "<pid> <rv>". x86-64/aarch64 SysV: the generic
 * wrappers forward 8 integer-class arguments, which covers every PKCS#11 v2.40 function. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
typedef unsigned long U;
typedef struct { unsigned char major, minor; } V;
#define N 68
typedef struct { V version; void *f[N]; } FL;
static FL *real, mine;
static U fault(void) {
  FILE *fp = fopen(FAULT_FILE, "r");
  if (!fp) return 0;
  char buf[32] = {0};
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  U rv = n ? strtoul(buf, NULL, 0) : 0;
  return rv ? rv : 0x32UL;
}
static void note_login(U rv) {
  FILE *fp = fopen(LOGIN_LOG, "a");
  if (fp) { fprintf(fp, "%d %lu\n", (int)getpid(), rv); fclose(fp); }
}
typedef U (*F8)(U, U, U, U, U, U, U, U);
#define W(i) static U w##i(U a, U b, U c, U d, U e, U f, U g, U h) { \
  U rv = fault(); \
  if (!rv) rv = ((F8)real->f[i])(a, b, c, d, e, f, g, h); \
  if (i == 18) note_login(rv); \
  return rv; }
W(0) W(1) W(2) W(3) W(4) W(5) W(6) W(7) W(8) W(9) W(10) W(11) W(12) W(13) W(14) W(15) W(16)
W(17) W(18) W(19) W(20) W(21) W(22) W(23) W(24) W(25) W(26) W(27) W(28) W(29) W(30) W(31)
W(32) W(33) W(34) W(35) W(36) W(37) W(38) W(39) W(40) W(41) W(42) W(43) W(44) W(45) W(46)
W(47) W(48) W(49) W(50) W(51) W(52) W(53) W(54) W(55) W(56) W(57) W(58) W(59) W(60) W(61)
W(62) W(63) W(64) W(65) W(66) W(67)
static void *wrappers[N] = {w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14,
  w15, w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31, w32,
  w33, w34, w35, w36, w37, w38, w39, w40, w41, w42, w43, w44, w45, w46, w47, w48, w49, w50,
  w51, w52, w53, w54, w55, w56, w57, w58, w59, w60, w61, w62, w63, w64, w65, w66, w67};
U C_GetFunctionList(FL **out) {
  if (!out) return 0x7UL; /* CKR_ARGUMENTS_BAD */
  if (!real) {
    void *lib = dlopen(REAL_MODULE, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return 0x5UL;
    U (*get)(FL **) = (U (*)(FL **))dlsym(lib, "C_GetFunctionList");
    if (!get) return 0x5UL;
    U rv = get(&real);
    if (rv) return rv;
    mine.version = real->version;
    for (int i = 0; i < N; i++) mine.f[i] = real->f[i] ? wrappers[i] : NULL;
    for (int i = 0; i < 4; i++) mine.f[i] = real->f[i];
  }
  *out = &mine;
  return 0;
}
"""


def build_shim(directory, fault_file, login_log):
    """Compiles the fault-injection module into `directory`; skips the test without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the PKCS#11 fault-injection shim")
    src, lib = Path(directory) / "faulty-pkcs11.c", Path(directory) / "faulty-pkcs11.so"
    src.write_text(SHIM_C)

    def quoted(value):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    pcadtest.run([cc, "-O2", "-shared", "-fPIC", "-Wall",
                  f"-DFAULT_FILE={quoted(fault_file)}", f"-DLOGIN_LOG={quoted(login_log)}",
                  f"-DREAL_MODULE={quoted(SOFTHSM)}", "-o", lib, src, "-ldl"])
    return lib


def set_key(text, section, key, value):
    """Sets `key = value` (value already TOML-encoded) inside `[section]` of a TOML text."""
    m = re.search(rf"(?ms)^\[{re.escape(section)}\]\s*$(.*?)(?=^\[|\Z)", text)
    assert m, f"no [{section}] in the config"
    body = m.group(1)
    line = f"{key} = {value}"
    if re.search(rf"(?m)^{re.escape(key)}\s*=.*$", body):
        body = re.sub(rf"(?m)^{re.escape(key)}\s*=.*$", lambda _: line, body, count=1)
    else:
        body = f"\n{line}" + body
    return text[: m.start(1)] + body + text[m.end(1):]


def quickstart(directory, api_port, public_port):
    proc = subprocess.run(
        [str(PCAD_BIN), "quickstart", "--dir", str(directory), "--api-port", str(api_port),
         "--public-port", str(public_port)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"pcad quickstart failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


class Lab:
    """A private quickstart folder and `pcad serve` process (see the module docstring)."""

    def __init__(self, root, shim=True):
        if not PCAD_BIN.exists():
            pytest.exit(f"{PCAD_BIN} not found: build it or set PCAD_BIN", 2)
        self.root = Path(root)
        self.dir = self.root / "quickstart"
        self.api_port, self.public_port, self.metrics_port = free_ports(3)
        self.quickstart_output = quickstart(self.dir, self.api_port, self.public_port)
        self.tls = self.dir / "tls"
        self.ca_pem = str(self.tls / "ca.pem")
        self.config = self.dir / "pcad.toml"
        self.softhsm_conf = self.dir / "softhsm2.conf"
        self.tokens = self.dir / "tokens"
        self.log = self.root / "pcad.log"
        self.api_url = f"https://localhost:{self.api_port}"
        self.public_url = f"http://127.0.0.1:{self.public_port}"
        self.fault_file = self.root / "hsm-fault"
        self.login_log = self.root / "c_login.log"
        text = set_key(self.config.read_text(), "metrics", "listen",
                       f'"127.0.0.1:{self.metrics_port}"')
        self.module = SOFTHSM
        if shim:
            self.module = build_shim(self.root, self.fault_file, self.login_log)
            text = set_key(text, "hsm", "module", f'"{self.module}"')
        self.config.write_text(text)
        self.proc = None
        self.starts = 0

    # --- what pcadtest.Api needs
    def client_cert(self, identity):
        name = {"pcad-admin": "admin", "pcad-viewer": "viewer"}.get(identity, identity)
        return (str(self.tls / f"{name}.pem"), str(self.tls / f"{name}.key"))

    def api(self, appkey, identity="admin"):
        return Api(self, identity, appkey)

    def pin(self):
        return (self.dir / "hsm-pin").read_text().strip()

    # --- the process
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=30):
        assert not self.running
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            env = dict(os.environ)
            env.pop("CREDENTIALS_DIRECTORY", None)
            self.proc = subprocess.Popen([str(PCAD_BIN), "serve", "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pcad serve exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if self.healthz()[0] == 200 and port_open(self.api_port):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"lab pcad not healthy in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout=20):
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        if self.running:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- health and faults
    def healthz(self):
        """(HTTP status, JSON body or None); (None, None) when nothing answers."""
        try:
            r = requests.get(f"{self.public_url}/healthz", timeout=2)
        except requests.RequestException:
            return None, None
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, None

    def wait_health(self, up, timeout, interval=0.05):
        """Seconds until /healthz says `up` (200, hsm up) or not (503, hsm down); None on timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            status, body = self.healthz()
            if up and status == 200 and body and body.get("hsm") == "up":
                return time.monotonic() - started
            if not up and status == 503 and body and body.get("hsm") == "down":
                return time.monotonic() - started
            time.sleep(interval)
        return None

    def fault(self, code=CKR["DEVICE_REMOVED"]):
        """From now on every PKCS#11 call of the daemon answers `code` (see the shim)."""
        assert self.module != SOFTHSM, "this lab runs without the fault-injection shim"
        tmp = self.fault_file.with_suffix(".tmp")
        tmp.write_text(hex(code))
        os.replace(tmp, self.fault_file)

    def clear(self):
        try:
            self.fault_file.unlink()
        except FileNotFoundError:
            pass

    def logins(self, pid=None):
        """[(pid, CKR_* result)] of every C_Login made through the shim (by `pid` if given)."""
        try:
            lines = self.login_log.read_text().split()
        except FileNotFoundError:
            return []
        pairs = [(int(lines[i]), int(lines[i + 1])) for i in range(0, len(lines) - 1, 2)]
        return [p for p in pairs if pid is None or p[0] == pid]

    def variant_config(self, name, **changes):
        """A copy of the config (`{name}.toml` next to it) with `section.key = value` changes
        given as {"hsm.pin_file": '"x"'}; gets its own ports and database folder."""
        api_port, public_port, metrics_port = free_ports(3)
        text = self.config.read_text()
        text = set_key(text, "api", "listen", f'"127.0.0.1:{api_port}"')
        text = set_key(text, "public", "listen", f'"127.0.0.1:{public_port}"')
        text = set_key(text, "metrics", "listen", f'"127.0.0.1:{metrics_port}"')
        text = set_key(text, "storage", "path", f'"data-{name}"')
        for dotted, value in changes.items():
            section, key = dotted.split(".", 1)
            text = set_key(text, section, key, value)
        path = self.dir / f"{name}.toml"
        path.write_text(text)
        os.chmod(path, 0o640)
        return path

    def pkcs11_tool(self, *args, pin=None, new_pin=None, module=SOFTHSM, check=True):
        """pkcs11-tool on the lab's token with the real module; PINs travel in the environment."""
        env = dict(os.environ, SOFTHSM2_CONF=str(self.softhsm_conf))
        argv = ["pkcs11-tool", "--module", module, "--token-label", "pcad"]
        if pin is not None:
            env["LAB_PIN"] = pin
            argv += ["--login", "--pin", "env:LAB_PIN"]
        if new_pin is not None:
            env["LAB_NEW_PIN"] = new_pin
            argv += ["--new-pin", "env:LAB_NEW_PIN"]
        return pcadtest.run(argv + list(args), env=env, check=check)


# --------------------------------------------------------------------------------------------
# A small PKI on a lab (or the shared daemon)


def tpl_body(parent, name=None):
    return {
        "name": name or unique("tpl"),
        "parentCertId": parent,
        "maxTTL": 30 * 86400,
        "keyInfo": {"algorithm": "EC", "keySize": 256},
        "keyUsage": ["DIGITAL_SIGNATURE"],
        "extendedKeyUsage": ["SERVER_AUTHENTICATION"],
        "subjectInfo": {"organization": "pcad tests", "country": "KR"},
    }


def leaf_body(cn=None, **extra):
    return {"mode": "GENERATE", "commonName": cn or f"{unique('leaf')}.example.com",
            "ttlValue": 86400, **extra}


class Pki:
    """A store (OCSP and CRL on) with an EC ROOT, a template and leaves."""

    def __init__(self, api, leaves=4, revoked=1):
        self.api = api
        self.store = api.create_store(unique("outage"), ocspActive=True, crlActive=True)
        self.sid = self.store["caStoreId"]
        self.root = api.new_issuer(self.sid, issuer_body("EC", 256, max_depth=0))
        self.root_cert = pcadtest.load_pem(self.root["certificatePem"])
        self.template = api.create_template(self.sid, tpl_body(self.root["certId"]))
        self.leaves = []  # [(certId, cryptography cert, expected status "GOOD"/"REVOKED")]
        for i in range(leaves):
            resp = api.issue(self.sid, self.template["templateId"], leaf_body())
            self.leaves.append([resp["certId"], pcadtest.load_pem(resp["certificate"]), "GOOD"])
        for entry in self.leaves[:revoked]:
            ok(api.post(f"/{self.sid}/certs/{entry[0]}/revoke", {"reason": "KEY_COMPROMISE"}))
            entry[2] = "REVOKED"

    @property
    def issue_path(self):
        return f"/{self.sid}/templates/{self.template['templateId']}/certificates"

    def ocsp_url(self, lab):
        return f"{lab.public_url}/v2.0/appkeys/{self.api.appkey}/ca-stores/{self.sid}/ocsp"

    def crl_url(self, lab):
        return (f"{lab.public_url}/v2.0/appkeys/{self.api.appkey}/ca-stores/{self.sid}"
                f"/certs/{self.root['certId']}/crl/der")

    def queries(self):
        """[(request DER, issuer cert, expected status)] for every leaf."""
        return [(ocsp_request(cert, self.root_cert), self.root_cert, status)
                for _, cert, status in self.leaves]


# --------------------------------------------------------------------------------------------
# OCSP


def ocsp_request(cert, issuer):
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
            .public_bytes(serialization.Encoding.DER))


def ocsp_send(session, url, der, how):
    """One OCSP query: how = "POST", "GET" (seed form: base64url, no padding) or "GET-RFC"
    (RFC 6960 Appendix A: standard base64, URL-encoded)."""
    if how == "POST":
        return session.post(url, data=der, headers={"Content-Type": "application/ocsp-request"},
                            timeout=10)
    if how == "GET":
        enc = base64.urlsafe_b64encode(der).decode().rstrip("=")
    else:
        enc = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    return session.get(f"{url}/{enc}", timeout=10)


def ocsp_verdict(status_code, body, expected):
    """None when the answer is a successful response with the expected certificate status,
    else a short description of what was wrong."""
    if status_code != 200:
        return f"HTTP {status_code}"
    try:
        resp = ocsp.load_der_ocsp_response(body)
    except ValueError as e:
        return f"not an OCSP response ({e})"
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return resp.response_status.name
    if resp.certificate_status.name != expected:
        return f"status {resp.certificate_status.name}, expected {expected}"
    return None


def verify_ocsp_signature(body, issuer):
    """Raises unless the response is signed by the issuer's key and still fresh."""
    resp = ocsp.load_der_ocsp_response(body)
    key = issuer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(resp.signature_hash_algorithm))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(),
                   resp.signature_hash_algorithm)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(resp.signature, resp.tbs_response_bytes)
    now = time.time()
    assert resp.next_update_utc.timestamp() > now, "expired OCSP response served"
    return resp


# --------------------------------------------------------------------------------------------
# Load


class Recorder(threading.Thread):
    """Runs `step(session, i)` in a loop until stopped; each step returns an outcome that is
    recorded as (start, end, outcome)."""

    def __init__(self, name, step, session_factory):
        super().__init__(name=name, daemon=True)
        self.step = step
        self.session_factory = session_factory
        self.records = []
        self.halt = threading.Event()
        self.error = None

    def run(self):
        session = self.session_factory()
        i = 0
        try:
            while not self.halt.is_set():
                t0 = time.monotonic()
                try:
                    outcome = self.step(session, i)
                except requests.RequestException as e:
                    outcome = ("exception", type(e).__name__)
                self.records.append((t0, time.monotonic(), outcome))
                i += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(30)


def ocsp_load(lab, pki, name="ocsp"):
    """OCSP queries in a loop over every leaf, alternating POST / GET / GET-RFC. Outcome:
    (None or what was wrong, leaf index, response body)."""
    url = pki.ocsp_url(lab)
    queries = pki.queries()
    forms = ("POST", "GET", "GET-RFC")

    def step(session, i):
        der, _, expected = queries[i % len(queries)]
        r = ocsp_send(session, url, der, forms[i % len(forms)])
        return (ocsp_verdict(r.status_code, r.content, expected), i % len(queries), r.content)

    return Recorder(name, step, requests.Session)


def issuance_load(lab, pki, name="issue"):
    """Leaf issuance in a loop. Outcome: (HTTP status, resultCode)."""
    url = f"{lab.api_url}/v2.0/appkeys/{pki.api.appkey}/ca-stores{pki.issue_path}"

    cert = lab.client_cert("admin")

    def step(session, i):
        # verify= per request: a Session's own `verify` loses to $REQUESTS_CA_BUNDLE.
        r = session.post(url, json=leaf_body(f"load-{i}.example.com"), cert=cert,
                         verify=lab.ca_pem, timeout=30)
        try:
            code = r.json()["header"]["resultCode"]
        except (ValueError, KeyError, TypeError):
            code = None
        return (r.status_code, code)

    return Recorder(name, step, requests.Session)


def timed(fn):
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


def envelope(reply):
    """(HTTP status, resultCode, resultMessage) of an API reply."""
    header = (reply.json or {}).get("header") or {}
    return reply.status, header.get("resultCode"), header.get("resultMessage")
