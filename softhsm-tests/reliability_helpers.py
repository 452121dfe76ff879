"""Helpers for the reliability tests (test_crash_safety.py, test_load.py, test_role_matrix.py,
test_input_catalogue.py).

Kept apart from conftest.py / pcadtest.py (owned by another engineer). The crash and load tests run
against a private daemon (`private_pcad`): their own quickstart folder, token, ports and database,
so SIGKILLs and load never disturb the session daemon that every other module shares.
"""

import contextlib
import secrets
import subprocess
import threading

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

import conftest
from conftest import Pcad, free_ports, prepare_config
from pcadtest import issuer_body, load_pem, unique


# --------------------------------------------------------------------------------------------
# A private daemon


@contextlib.contextmanager
def private_pcad(tmp_path_factory, name):
    """`pcad quickstart` into a fresh folder with free ports, then `pcad serve`; yields a `Pcad`
    (same shape as the session fixture, so `pcadtest.Api` works with it). Stopped on exit."""
    directory = tmp_path_factory.mktemp(name) / "quickstart"
    api_port, public_port, metrics_port = free_ports(3)
    proc = subprocess.run(
        [str(conftest.PCAD_BIN), "quickstart", "--dir", str(directory), "--api-port",
         str(api_port), "--public-port", str(public_port)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"pcad quickstart failed:\n{proc.stdout}\n{proc.stderr}"
    prepare_config(directory / "pcad.toml", metrics_port)
    env = Pcad(directory, api_port, public_port, metrics_port, proc.stdout)
    # The failure hook of conftest.py shows the tail of the last registered daemon's log.
    conftest._DAEMONS.append(env.daemon)
    try:
        env.daemon.start()
        yield env
    finally:
        try:
            if env.daemon.running:
                env.daemon.stop()
        finally:
            conftest._DAEMONS.remove(env.daemon)


# --------------------------------------------------------------------------------------------
# A light keep-alive client (one per thread: requests.Session is not thread-safe)


class Client:
    """Keep-alive HTTP client for one identity on one appkey. `call` never raises on HTTP
    errors; it returns (status, parsed JSON or None, raw bytes)."""

    def __init__(self, pcad, identity="admin", appkey="demo", edition="ca-stores", timeout=30):
        self.pcad = pcad
        self.appkey = appkey
        self.edition = edition
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify
        self.verify = pcad.ca_pem
        self.cert = None if identity is None else pcad.client_cert(identity)

    def url(self, path=""):
        return f"{self.pcad.api_url}/v2.0/appkeys/{self.appkey}/{self.edition}{path}"

    def call(self, method, path="", body=None):
        kwargs = {"timeout": self.timeout, "verify": self.verify, "cert": self.cert}
        if body is not None:
            kwargs["json"] = body
        r = self.session.request(method, self.url(path), **kwargs)
        try:
            data = r.json()
        except ValueError:
            data = None
        return r.status_code, data, r.content

    def close(self):
        self.session.close()


# --------------------------------------------------------------------------------------------
# A small PKI: store (CRL + OCSP on) / EC ROOT / EC INTERMEDIATE / EC-256 leaf template


def leaf_template(parent_id, name=None):
    return {
        "name": name or unique("tpl-rel"),
        "parentCertId": parent_id,
        "maxTTL": 90 * 86400,
        "keyInfo": {"algorithm": "EC", "keySize": 256},
        "keyUsage": ["DIGITAL_SIGNATURE"],
        "extendedKeyUsage": ["SERVER_AUTHENTICATION"],
        "subjectInfo": {"organization": "pcad tests", "country": "KR"},
    }


def leaf_request(cn=None, ttl=7 * 86400):
    return {"mode": "GENERATE", "commonName": cn or f"{secrets.token_hex(5)}.example.com",
            "ttlValue": ttl}


def build_pki(api, name="rel"):
    """Creates the store, ROOT, INTERMEDIATE and template with `api` (a `pcadtest.Api`).
    Returns a dict: sid, root, int (details), int_cert (x509), tid, issue/revoke paths."""
    store = api.create_store(unique(name), crlActive=True, crlRefreshPeriod=7, ocspActive=True,
                             ocspRefreshPeriod=1)
    sid = store["caStoreId"]
    root = api.new_issuer(sid, issuer_body("EC", 256, max_depth=1, ttl=10 * 365 * 86400,
                                           cn=f"Reliability Root {secrets.token_hex(3)}"))
    inter = api.new_issuer(sid, issuer_body("EC", 256, kind="INTERMEDIATE",
                                            parent=root["certId"], max_depth=0,
                                            ttl=5 * 365 * 86400,
                                            cn=f"Reliability Issuing CA {secrets.token_hex(3)}"))
    tpl = api.create_template(sid, leaf_template(inter["certId"]))
    return {
        "sid": sid, "store": store, "root": root, "int": inter,
        "int_cert": load_pem(inter["certificatePem"]), "tid": tpl["templateId"],
        "issue_path": f"/{sid}/templates/{tpl['templateId']}/certificates",
    }


# --------------------------------------------------------------------------------------------
# OCSP and CRL


def ocsp_request(cert, issuer):
    """A SHA-1 CertID request (what most clients send; API.md: SHA-1 CertIDs are pre-signed)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_url(pcad, appkey, sid):
    return f"{pcad.public_url}/v2.0/appkeys/{appkey}/ca-stores/{sid}/ocsp"


def verify_ocsp_signature(resp, issuer_cert):
    """Raises unless `resp` is signed by `issuer_cert`'s key (EC issuers only here)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    issuer_cert.public_key().verify(resp.signature, resp.tbs_response_bytes,
                                    ec.ECDSA(resp.signature_hash_algorithm))


def crl_number(pcad, appkey, sid, issuer_id, session=None):
    """(CRL number, set of revoked serials) of the issuer's CRL from the public listener."""
    get = (session or requests).get
    r = get(f"{pcad.public_url}/v2.0/appkeys/{appkey}/ca-stores/{sid}/certs/{issuer_id}/crl/der",
            timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    crl = x509.load_der_x509_crl(r.content)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number, {entry.serial_number for entry in crl}


# --------------------------------------------------------------------------------------------
# Figures


class Stats:
    """Thread-safe latency/error recorder per request kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = {}
        self.errors = {}
        self.samples = {}

    def ok(self, kind, seconds):
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)

    def error(self, kind, what):
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.samples.setdefault(kind, [])
            if len(self.samples[kind]) < 5:
                self.samples[kind].append(what)

    def summary(self, duration):
        rows = {}
        for kind in sorted(set(self.latencies) | set(self.errors)):
            lat = sorted(self.latencies.get(kind, []))
            n = len(lat)
            rows[kind] = {
                "ok": n,
                "errors": self.errors.get(kind, 0),
                "rps": n / duration if duration else 0.0,
                "p50_ms": 1000 * lat[n // 2] if n else None,
                "p99_ms": 1000 * lat[min(n - 1, int(n * 0.99))] if n else None,
                "max_ms": 1000 * lat[-1] if n else None,
            }
        return rows


def format_summary(rows, duration):
    lines = [f"{'kind':<8} {'ok':>7} {'errors':>6} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'max ms':>8}   ({duration:.1f} s)"]
    for kind, r in rows.items():
        fmt = lambda v: f"{v:8.1f}" if v is not None else f"{'-':>8}"  # noqa: E731
        lines.append(f"{kind:<8} {r['ok']:>7} {r['errors']:>6} {r['rps']:8.1f} "
                     f"{fmt(r['p50_ms'])} {fmt(r['p99_ms'])} {fmt(r['max_ms'])}")
    return "\n".join(lines)
