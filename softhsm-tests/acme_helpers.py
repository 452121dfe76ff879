"""ACME test environment: a pcad daemon of its own (its `[acme]` section points validation at
free loopback ports and at a real `pebble-challtestsrv` DNS server), a store with a root, an
intermediate, an EC-256 template and a base certificate, and a small raw ACME client (JWS made
here with `cryptography`) for the refusals real clients never send.

The fixtures `env` (one such daemon per test module) and `http01` (the http-01 answer server)
are used by importing them into a test module: `from acme_helpers import env, http01`."""

import base64
import hashlib
import http.server
import json
import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

import conftest
import pcadtest
from pcadtest import issuer_body, ok, unique

BASE_CN = "www.acme.test"
BASE_SANS = ["*.apps.acme.test", "api.acme.test"]
ERR = "urn:ietf:params:acme:error:"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def env(request, tmp_path_factory):
    """An ACME daemon of the test module's own (`AcmeEnv`), stopped when the module is done."""
    stem = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    e = AcmeEnv(tmp_path_factory.mktemp(stem))
    yield e
    e.stop()


@pytest.fixture
def http01(env):
    """The http-01 answer server on the port the daemon validates against."""
    s = ChallengeServer(env.http_port)
    yield s
    s.close()


def problem(r, kind, status):
    """Asserts an ACME problem document of type `kind` and HTTP `status`; returns it."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/problem+json", r.headers
    assert r.json()["type"] == ERR + kind, r.text
    assert r.headers.get("Replay-Nonce"), "every answer carries a nonce, errors too"
    return r.json()


class ChallTestSrv:
    """`pebble-challtestsrv` as the DNS server of `[acme] resolver` (A queries -> 127.0.0.1)."""

    def __init__(self, dns_port, mgmt_port, log):
        self.dns_port, self.mgmt = dns_port, f"http://127.0.0.1:{mgmt_port}"
        self.proc = subprocess.Popen(
            ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "",
             "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{mgmt_port}",
             "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not conftest.port_open(mgmt_port):
            assert self.proc.poll() is None, "pebble-challtestsrv exited"
            assert time.monotonic() < deadline, "pebble-challtestsrv did not start"
            time.sleep(0.1)

    def set_txt(self, host, value):
        r = requests.post(f"{self.mgmt}/set-txt", json={"host": host, "value": value}, timeout=10)
        assert r.status_code == 200, r.text

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class AcmeEnv:
    def __init__(self, root_dir):
        self.dir = Path(root_dir)
        (api_port, public_port, metrics_port, self.http_port, self.tls_port, dns_port,
         mgmt_port) = conftest.free_ports(7)
        qs = self.dir / "quickstart"
        proc = subprocess.run(
            [str(conftest.PCAD_BIN), "quickstart", "--dir", str(qs), "--api-port", str(api_port),
             "--public-port", str(public_port)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        conftest.prepare_config(qs / "pcad.toml", metrics_port)
        with open(qs / "pcad.toml", "a") as f:
            f.write(f'\n[acme]\nhttp_port = {self.http_port}\ntls_port = {self.tls_port}\n'
                    f'resolver = "127.0.0.1:{dns_port}"\n')
        self.dns = ChallTestSrv(dns_port, mgmt_port, open(self.dir / "challtestsrv.log", "ab"))
        self.pcad = conftest.Pcad(qs, api_port, public_port, metrics_port, proc.stdout)
        try:
            self.pcad.daemon.start()
            self._setup()
        except BaseException:
            self.stop()
            raise

    def _setup(self):
        self.admin = self.pcad.api("admin", f"acme-{secrets.token_hex(3)}")
        store = self.admin.create_store(unique("acme"), ocspActive=True, crlActive=True)
        self.sid = store["caStoreId"]
        self.root = self.admin.new_issuer(self.sid, issuer_body(
            "EC", 256, max_depth=1, ttl=10 * 365 * 86400, cn="ACME Test Root"))
        self.inter = self.admin.new_issuer(self.sid, issuer_body(
            "EC", 256, kind="INTERMEDIATE", parent=self.root["certId"], max_depth=0,
            ttl=5 * 365 * 86400, cn="ACME Test Intermediate"))
        self.template = self.admin.create_template(self.sid, {
            "name": unique("acme-tpl"), "parentCertId": self.inter["certId"],
            "maxTTL": 90 * 86400, "keyInfo": {"algorithm": "EC", "keySize": 256},
            "keyUsage": ["DIGITAL_SIGNATURE"],
            "extendedKeyUsage": ["SERVER_AUTHENTICATION", "CLIENT_AUTHENTICATION"],
            "subjectInfo": {"organization": "pcad tests", "country": "KR"},
            "storeInServer": True})
        self.base = self.issue_base(BASE_CN, BASE_SANS)

    def issue_base(self, cn, sans, ttl=30 * 86400):
        leaf = self.admin.issue(self.sid, self.template["templateId"], {
            "mode": "GENERATE", "commonName": cn, "sans": sans, "ttlValue": ttl})
        return leaf

    def directory(self, cert_id=None):
        cid = cert_id or self.base["certId"]
        return f"{self.pcad.api_url}/acme/v2.0/cert/{cid}/directory"

    def token(self, cert_id=None, name=None, edition="ca-stores"):
        cid = cert_id or self.base["certId"]
        api = self.admin.with_(edition=edition)
        return ok(api.post(f"/{self.sid}/certs/{cid}/acme-tokens",
                           {"name": name or unique("tok")}))

    def stop(self):
        self.pcad.daemon.stop()
        self.dns.stop()


class ChallengeServer:
    """A plain HTTP server on the configured http-01 port answering key authorizations."""

    def __init__(self, port):
        self.answers = {}
        answers = self.answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                token = self.path.rsplit("/", 1)[-1]
                body = answers.get(token)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if isinstance(body, tuple):  # ("huge", size), ("slow", s, text), ("redirect", url)
                    if body[0] == "redirect":
                        self.send_response(302)
                        self.send_header("Location", body[1])
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if body[0] == "slow":
                        time.sleep(body[1])
                        body = body[2]
                    else:
                        body = "x" * body[1]
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Client:
    """A raw ACME client with an EC P-256 account key."""

    def __init__(self, env, cert_id=None, key=None):
        self.env = env
        self.dir_url = env.directory(cert_id)
        self.verify = env.pcad.ca_pem
        self.dir = requests.get(self.dir_url, verify=self.verify, timeout=30).json()
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.kid = None
        self.nonce = None

    @staticmethod
    def jwk_of(key):
        n = key.public_key().public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": b64(n.x.to_bytes(32, "big")),
                "y": b64(n.y.to_bytes(32, "big"))}

    def jwk(self):
        return self.jwk_of(self.key)

    def thumbprint(self):
        canon = json.dumps(self.jwk(), separators=(",", ":"), sort_keys=True)
        return b64(hashlib.sha256(canon.encode()).digest())

    def new_nonce(self):
        r = requests.head(self.dir["newNonce"], verify=self.verify, timeout=30)
        assert r.status_code == 200 and r.headers.get("Replay-Nonce"), r
        return r.headers["Replay-Nonce"]

    @staticmethod
    def sign(key, protected, payload):
        p = b64(json.dumps(protected).encode())
        pl = "" if payload is None else b64(json.dumps(payload).encode())
        der = key.sign(f"{p}.{pl}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = utils.decode_dss_signature(der)
        return {"protected": p, "payload": pl,
                "signature": b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))}

    def jws(self, url, payload, *, use_jwk=False, nonce=None, key=None, extra=None):
        protected = {"alg": "ES256", "nonce": nonce or self.nonce or self.new_nonce(),
                     "url": url}
        if use_jwk or self.kid is None:
            protected["jwk"] = self.jwk_of(key or self.key)
        else:
            protected["kid"] = self.kid
        protected.update(extra or {})
        return self.sign(key or self.key, protected, payload)

    def post_raw(self, url, body, content_type="application/jose+json"):
        r = requests.post(url, data=json.dumps(body) if not isinstance(body, (bytes, str))
                          else body, headers={"Content-Type": content_type},
                          verify=self.verify, timeout=60)
        self.nonce = r.headers.get("Replay-Nonce")
        return r

    def post(self, url, payload, **kw):
        return self.post_raw(url, self.jws(url, payload, **kw))

    def eab(self, token):
        url = self.dir["newAccount"]
        protected = {"alg": "HS256", "kid": token["tokenId"], "url": url}
        p = b64(json.dumps(protected).encode())
        pl = b64(json.dumps(self.jwk()).encode())
        import hmac
        mac = hmac.new(unb64(token["hmacKey"]), f"{p}.{pl}".encode(), hashlib.sha256).digest()
        return {"protected": p, "payload": pl, "signature": b64(mac)}

    def register(self, token, contact=("mailto:ops@acme.test",)):
        r = self.post(self.dir["newAccount"], {"termsOfServiceAgreed": True,
                                                "contact": list(contact),
                                                "externalAccountBinding": self.eab(token)},
                      use_jwk=True)
        assert r.status_code in (200, 201), r.text
        self.kid = r.headers["Location"]
        return r

    def order(self, names):
        r = self.post(self.dir["newOrder"], {"identifiers": [
            {"type": "dns", "value": n} for n in names]})
        assert r.status_code == 201, r.text
        return r.headers["Location"], r.json()

    def key_authorization(self, token):
        return f"{token}.{self.thumbprint()}"

    def solve_http(self, order, challenge_server, timeout=30):
        """Answers every authorization of `order` over http-01; waits until the order is ready."""
        for authz_url in order["authorizations"]:
            authz = self.post(authz_url, None).json()
            ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
            challenge_server.answers[ch["token"]] = self.key_authorization(ch["token"])
            r = self.post(ch["url"], {})
            assert r.status_code == 200, r.text
        return self.wait_authz(order, timeout)

    def wait_authz(self, order, timeout=30):
        deadline = time.monotonic() + timeout
        for authz_url in order["authorizations"]:
            while True:
                authz = self.post(authz_url, None).json()
                if authz["status"] != "pending":
                    break
                assert time.monotonic() < deadline, authz
                time.sleep(0.2)
            if authz["status"] != "valid":
                return authz
        return None

    def finalize(self, order, names, key=None):
        key = key or ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                              critical=False)
               .sign(key, hashes.SHA256()))
        der = csr.public_bytes(serialization.Encoding.DER)
        return self.post(order["finalize"], {"csr": b64(der)}), key
