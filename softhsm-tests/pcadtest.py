"""Helpers shared by the end-to-end tests: the API client, envelope assertions, request bodies,
and wrappers around openssl / pkilint / pkcs11-tool.

Fixtures live in conftest.py; this module holds what tests import by name.
"""

import base64
import datetime as dt
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

SOFTHSM_MODULE = os.environ.get("PCAD_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
SUCCESS_HEADER = {"resultCode": 0, "resultMessage": "SUCCESS", "isSuccessful": True}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
HEX_SERIAL = re.compile(r"^[0-9a-f]+$")
EDITIONS = ("ca-stores", "cas")

# Every keyInfo of the seed with a fitting signatureAlgorithm: (algorithm, keySize, signatureAlgorithm).
KEY_CASES = [
    ("RSA", 2048, "SHA256_WITH_RSA"),
    ("RSA", 3072, "SHA384_WITH_RSA"),
    ("RSA", 4096, "SHA512_WITH_RSA"),
    ("EC", 224, "SHA256_WITH_ECDSA"),
    ("EC", 256, "SHA256_WITH_ECDSA"),
    ("EC", 384, "SHA384_WITH_ECDSA"),
    ("EC", 521, "SHA512_WITH_ECDSA"),
    ("ECDSA", 256, "SHA256_WITH_ECDSA"),
    ("ED25519", 256, "ED25519"),
]
CURVES = {224: "secp224r1", 256: "secp256r1", 384: "secp384r1", 521: "secp521r1"}
SIGNATURE_OIDS = {
    "SHA256_WITH_RSA": "1.2.840.113549.1.1.11",
    "SHA384_WITH_RSA": "1.2.840.113549.1.1.12",
    "SHA512_WITH_RSA": "1.2.840.113549.1.1.13",
    "SHA256_WITH_ECDSA": "1.2.840.10045.4.3.2",
    "SHA384_WITH_ECDSA": "1.2.840.10045.4.3.3",
    "SHA512_WITH_ECDSA": "1.2.840.10045.4.3.4",
    "ED25519": "1.3.101.112",
}


def key_id(alg, size):
    """A short name for a keyInfo, used as pytest id and dict key: `RSA-2048`, `ED25519`."""
    return "ED25519" if alg == "ED25519" else f"{alg}-{size}"


def unique(prefix):
    return f"{prefix}-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------------------------
# HTTP


class Reply:
    """One HTTP answer. Unpacks as `status, body_json` (json is None when the body is not JSON)."""

    def __init__(self, response=None, *, status=None, headers=None, content=b""):
        self.response = response
        if response is not None:
            status, headers, content = response.status_code, response.headers, response.content
        self.status = status
        self.headers = headers
        self.content = content
        self.text = content.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text)
        except ValueError:
            self.json = None

    def __iter__(self):
        return iter((self.status, self.json))

    def __repr__(self):
        return f"<Reply {self.status} {self.text[:600]!r}>"


class Api:
    """Management API client for one identity and one appkey.

    `identity` is a name from `Pcad.identities` ("admin", "viewer", "norole", "tenant-a-admin", ...),
    a `(cert, key)` tuple, or None for no client certificate.
    """

    def __init__(self, pcad, identity="admin", appkey="demo", edition="ca-stores", headers=None):
        self.pcad = pcad
        self.identity = identity
        if identity is None or isinstance(identity, tuple):
            self.client = identity
        else:
            self.client = pcad.client_cert(identity)
        self.appkey = appkey
        self.edition = edition
        self.headers = dict(headers or {})

    def with_(self, identity=None, appkey=None, edition=None):
        """The same client with another identity, appkey or path edition."""
        return Api(
            self.pcad,
            self.identity if identity is None else identity,
            appkey or self.appkey,
            edition or self.edition,
            self.headers,
        )

    def as_(self, identity):
        return Api(self.pcad, identity, self.appkey, self.edition, self.headers)

    def url(self, path=""):
        return f"{self.pcad.api_url}/v2.0/appkeys/{self.appkey}/{self.edition}{path}"

    def call(self, method, path="", *, json_body=None, data=None, headers=None, params=None,
             timeout=120):
        """`path` is relative to `/v2.0/appkeys/{appkey}/{edition}`; `json_body` is serialized,
        `data` (str/bytes) is sent as is with `Content-Type: application/json` unless overridden."""
        hdrs = dict(self.headers)
        body = data
        if json_body is not None:
            body = json.dumps(json_body)
        if body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        hdrs.update(headers or {})
        response = requests.request(
            method,
            self.url(path),
            data=body,
            headers=hdrs,
            params=params,
            cert=self.client,
            verify=self.pcad.ca_pem,
            timeout=timeout,
        )
        return Reply(response)

    def send_large(self, method, path, body, wait=1.0):
        """Sends a body the server may refuse before reading it (413): the headers first; if an
        answer arrives within `wait` seconds it is read without sending the body, otherwise the
        body follows. (requests loses an early answer to the reset of its unfinished upload.)"""
        ctx = ssl.create_default_context(cafile=self.pcad.ca_pem)
        if self.client:
            ctx.load_cert_chain(*self.client)
        raw = socket.create_connection(("127.0.0.1", self.pcad.api_port), timeout=60)
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            target = urllib.parse.urlsplit(self.url(path)).path
            head = (f"{method} {target} HTTP/1.1\r\nHost: localhost:{self.pcad.api_port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n")
            sock.sendall(head.encode())
            received = b""
            sock.settimeout(wait)
            try:
                received = sock.recv(65536)  # TLS 1.3 tickets are not application data
            except (TimeoutError, socket.timeout):
                pass
            sock.settimeout(60)
            if not received:
                try:
                    sock.sendall(body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # answered and closed while we were still uploading
            return parse_http_response(received, sock)

    def get(self, path="", **kw):
        return self.call("GET", path, **kw)

    def post(self, path="", body=None, **kw):
        return self.call("POST", path, json_body=body, **kw)

    def put(self, path="", body=None, **kw):
        return self.call("PUT", path, json_body=body, **kw)

    def delete(self, path="", **kw):
        return self.call("DELETE", path, **kw)

    # Resource shortcuts that assert success and return the envelope's body.

    def create_store(self, name=None, **fields):
        return ok(self.post("", {"name": name or unique("store"), **fields}))

    def store_count(self):
        return ok(self.get("", params={"size": 1}))["totalCount"]

    def create_issuer(self, store_id, body):
        return ok(self.post(f"/{store_id}/certs", body))

    def new_issuer(self, store_id, body):
        """Creates an issuer and returns its detail (with certificatePem and caChainPem)."""
        created = self.create_issuer(store_id, body)
        detail = self.cert(store_id, created["certId"])
        assert created["serialNumber"] == detail["serialNumber"], (created, detail)
        return detail

    def cert(self, store_id, cert_id):
        return ok(self.get(f"/{store_id}/certs/{cert_id}"))

    def cert_count(self, store_id, kind="all"):
        return ok(self.get(f"/{store_id}/certs", params={"type": kind, "size": 1}))["totalCount"]

    def create_template(self, store_id, body):
        return ok(self.post(f"/{store_id}/templates", body))

    def template_count(self, store_id):
        return ok(self.get(f"/{store_id}/templates", params={"size": 1}))["totalCount"]

    def issue(self, store_id, template_id, body):
        return ok(self.post(f"/{store_id}/templates/{template_id}/certificates", body))


def parse_http_response(received, sock):
    """Reads one HTTP/1.1 response (Content-Length framed, or up to close) into a Reply."""
    data = received
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().title()] = value.strip()
    length = int(headers.get("Content-Length", -1))
    while length < 0 or len(rest) < length:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        rest += chunk
    return Reply(status=status, headers=headers, content=rest if length < 0 else rest[:length])


def ok(reply):
    """Asserts a 200 success envelope and returns its body."""
    assert reply.status == 200, reply
    assert reply.json is not None, reply
    assert reply.json.get("header") == SUCCESS_HEADER, reply
    assert "body" in reply.json, reply
    return reply.json["body"]


def fails(reply, status, codes, *fields):
    """Asserts an error envelope: HTTP `status`, resultCode in `codes` (int or tuple),
    `isSuccessful: false`, `body: null`, and a resultMessage naming every one of `fields`
    (a tuple inside `fields` means: at least one of these)."""
    codes = (codes,) if isinstance(codes, int) else tuple(codes)
    assert reply.status == status, reply
    assert reply.json is not None, f"error answer is not a JSON envelope: {reply}"
    header = reply.json.get("header") or {}
    assert header.get("isSuccessful") is False, reply
    assert header.get("resultCode") in codes, reply
    assert reply.json.get("body", "missing") is None, reply
    message = header.get("resultMessage") or ""
    assert message and message != "SUCCESS", reply
    for field in fields:
        alternatives = field if isinstance(field, tuple) else (field,)
        assert any(f in message for f in alternatives), (
            f"resultMessage {message!r} should name {' or '.join(alternatives)}"
        )
    return message


def future_date(days):
    """A request `specificDate` `days` from now (noon UTC), and the datetime it names."""
    when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)).replace(
        hour=12, minute=0, second=0, microsecond=0)
    return when.strftime("%Y-%m-%dT%H:%M:%S"), when


def parse_timestamp(text):
    assert TIMESTAMP.match(text or ""), f"not a LocalDateTime 'YYYY-MM-DD HH:MM:SS': {text!r}"
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# Request bodies


def subject(cn, **extra):
    return {"commonName": cn, "organization": "pcad tests", "country": "KR", **extra}


def issuer_body(alg="EC", size=256, sig=None, *, kind="ROOT", parent=None, cn=None, name=None,
                ttl=5 * 365 * 86400, max_depth=2, **extra):
    """A valid ROOT (or INTERMEDIATE with `parent`) request; `extra` adds or overrides fields."""
    if sig is None:
        sig = {"RSA": "SHA256_WITH_RSA", "ED25519": "ED25519"}.get(alg, "SHA256_WITH_ECDSA")
    label = key_id(alg, size)
    body = {
        "certificateType": kind,
        "name": name or unique(f"{kind.lower()}-{label}"),
        "description": f"pcad test {kind} {label}",
        "subjectInfo": subject(cn or f"pcad Test {kind.title()} {label} {secrets.token_hex(3)}"),
        "ttlValue": ttl,
        "keyInfo": {"algorithm": alg, "keySize": size},
        "signatureAlgorithm": sig,
        "maxDepth": max_depth,
    }
    if parent is not None:
        body["parentCertId"] = parent
    body.update(extra)
    return body


# --------------------------------------------------------------------------------------------
# Certificates and external tools


def run(args, *, input=None, check=True, env=None, timeout=120):
    """subprocess.run with text output; on failure the assertion shows stdout and stderr."""
    proc = subprocess.run(
        [str(a) for a in args],
        input=input,
        capture_output=True,
        text=isinstance(input, str) or input is None,
        env=env,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )
    return proc


def load_pem(pem):
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def split_pems(text, kind="CERTIFICATE"):
    """Every `-----BEGIN {kind}-----` block of `text`, in order."""
    pattern = re.compile(
        rf"-----BEGIN {kind}-----\r?\n.*?-----END {kind}-----", re.DOTALL
    )
    return [m.group(0) + "\n" for m in pattern.finditer(text or "")]


def cert_text(pem):
    return run(["openssl", "x509", "-noout", "-text"], input=pem).stdout


def extension(cert, oid):
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def ski(cert):
    ext = extension(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    assert ext is not None, "no subjectKeyIdentifier"
    return ext.value.digest


def aki(cert):
    ext = extension(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    assert ext is not None, "no authorityKeyIdentifier"
    return ext.value.key_identifier


def serial_matches(text, cert):
    """`serialNumber` is lowercase hex without separators naming the certificate's serial
    (leading zeros, as in the DER bytes, are allowed)."""
    return bool(HEX_SERIAL.match(text or "")) and int(text, 16) == cert.serial_number


def openssl_verify(leaf_pem, root_pem, untrusted_pems=(), purpose=None):
    """`openssl verify -CAfile root [-untrusted chain] leaf`; returns stdout (asserts OK)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "root.pem").write_text(root_pem)
        (tmp / "leaf.pem").write_text(leaf_pem)
        args = ["openssl", "verify", "-CAfile", tmp / "root.pem"]
        if untrusted_pems:
            (tmp / "chain.pem").write_text("".join(untrusted_pems))
            args += ["-untrusted", tmp / "chain.pem"]
        if purpose:
            args += ["-purpose", purpose]
        out = run(args + [tmp / "leaf.pem"]).stdout
        assert out.strip().endswith(": OK"), out
        return out


def pkilint_findings(pem, severity="ERROR"):
    """pkilint's RFC 5280 certificate linter; returns findings at `severity` or worse."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        proc = run(
            [sys.executable, "-m", "pkilint.bin.lint_pkix_cert", "lint",
             "-s", severity, "-f", "JSON", f.name],
            check=False,
        )
    assert proc.returncode in (0, 1, 2), f"pkilint failed to run: {proc.stderr}"
    results = json.loads(proc.stdout)["results"]
    return [
        {"node": r["node_path"], "validator": r["validator"], **d}
        for r in results
        for d in r["finding_descriptions"]
    ]


def b64der_to_cert(text):
    return x509.load_der_x509_certificate(base64.b64decode(text))


def public_der(key_or_cert):
    key = key_or_cert.public_key() if hasattr(key_or_cert, "public_key") else key_or_cert
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --------------------------------------------------------------------------------------------
# The token


def token_objects(pcad, kind="privkey"):
    """pkcs11-tool --list-objects on the daemon's token, parsed into dicts
    {"type": "EC", "label": ..., "ID": ..., "Access": [...], ...}. The PIN goes through the
    environment (`--pin env:NAME`), never the command line. pcad's objects all carry a CKA_ID:
    a listing that shows one without (SoftHSM answering for an object file that changed under
    it while pkcs11-tool read it, seen once on a loaded machine) is taken again."""
    env = dict(os.environ, SOFTHSM2_CONF=str(pcad.softhsm_conf), PCAD_TEST_PIN=pcad.pin())
    for attempt in range(5):
        out = run(
            ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", "pcad",
             "--login", "--pin", "env:PCAD_TEST_PIN", "--list-objects", "--type", kind],
            env=env,
        ).stdout
        objects = parse_token_objects(out)
        if all("ID" in o for o in objects):
            return objects
        time.sleep(0.2)
    raise AssertionError(f"pkcs11-tool listed {kind} objects without an ID five times:\n{out}")


def parse_token_objects(out):
    """The objects of a `pkcs11-tool --list-objects` listing."""
    objects = []
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            head, _, rest = line.partition(";")
            objects.append({"object": head.strip(), "type": rest.strip(), "Access": []})
        elif objects and ":" in line:
            key, _, value = line.strip().partition(":")
            value = value.strip()
            if key == "Access":
                value = [v.strip() for v in value.split(",") if v.strip()]
            objects[-1][key] = value
    return objects
