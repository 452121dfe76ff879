"""Helpers for test_crl.py and test_ocsp.py (revocation status: CRLs and OCSP).

Kept apart from pcadtest.py (owned by another engineer): a small PKI builder (store, ROOT,
INTERMEDIATE, template, leaves written to files for openssl/ocsptool), public-route URLs, OCSP
request builders and senders, a minimal DER walker for what Python `cryptography` hides (whether
`revokedCertificates` is present, the subjectPublicKey BIT STRING), signature checks, and the
pkilint CRL / OCSP CLIs.
"""

import base64
import datetime as dt
import email.utils
import hashlib
import http.client
import json
import secrets
import subprocess
import sys
import urllib.parse
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp

from pcadtest import issuer_body, load_pem, ok, unique

VENV_BIN = Path(sys.executable).parent

# Unsigned OCSP answers (RFC 6960 §4.2.1): OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED }.
MALFORMED = bytes.fromhex("30030a0101")
UNAUTHORIZED = bytes.fromhex("30030a0106")

# API reason -> (cryptography ReasonFlags or None for "no reasonCode entry", openssl's text).
REASONS = {
    "UNSPECIFIED": (None, "unspecified"),
    "KEY_COMPROMISE": (x509.ReasonFlags.key_compromise, "keyCompromise"),
    "CA_COMPROMISE": (x509.ReasonFlags.ca_compromise, "cACompromise"),
    "AFFILIATION_CHANGED": (x509.ReasonFlags.affiliation_changed, "affiliationChanged"),
    "SUPERSEDED": (x509.ReasonFlags.superseded, "superseded"),
    "CESSATION_OF_OPERATION": (x509.ReasonFlags.cessation_of_operation,
                               "cessationOfOperation"),
    "CERTIFICATE_HOLD": (x509.ReasonFlags.certificate_hold, "certificateHold"),
    "PRIVILEGE_WITHDRAWN": (x509.ReasonFlags.privilege_withdrawn, "privilegeWithdrawn"),
}

DEFAULT_KU = {"RSA": ["DIGITAL_SIGNATURE", "KEY_ENCIPHERMENT"], "EC": ["DIGITAL_SIGNATURE"],
              "ED25519": ["DIGITAL_SIGNATURE"]}


def sh(args, *, check=False, input=None, timeout=60):
    """subprocess.run on a list of str/Path, capturing text (or bytes when `input` is bytes)."""
    return subprocess.run([str(a) for a in args], input=input, capture_output=True,
                          text=not isinstance(input, bytes), timeout=timeout, check=check)


def out(proc):
    """stdout + stderr of a finished process (openssl prints its verdicts on both)."""
    return f"{proc.stdout}\n{proc.stderr}"


# --------------------------------------------------------------------------------------------
# A small PKI built through the API


class Leaf:
    def __init__(self, resp, path):
        self.resp = resp
        self.cert_id = resp["certId"]
        self.serial = resp["serialNumber"]
        self.pem = resp["certificate"]
        self.cert = load_pem(self.pem)
        self.path = path
        path.write_text(self.pem)


class Chain:
    """A store's ROOT and INTERMEDIATE (plus a leaf template under the INTERMEDIATE), with the
    PEM files openssl needs: `root_path`, `int_path`, `chain_path` (int + root, as -CAfile)."""

    def __init__(self, admin, sid, root, inter, template, workdir, label):
        self.admin = admin
        self.sid = sid
        self.root = root
        self.int = inter
        self.template = template
        self.label = label
        self.dir = Path(workdir) / label
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root_cert = load_pem(root["certificatePem"])
        self.int_cert = load_pem(inter["certificatePem"])
        self.root_path = self.dir / "root.pem"
        self.int_path = self.dir / "int.pem"
        self.chain_path = self.dir / "chain.pem"
        self.root_path.write_text(root["certificatePem"])
        self.int_path.write_text(inter["certificatePem"])
        self.chain_path.write_text(inter["certificatePem"] + root["certificatePem"])

    def issue(self, cn=None, template=None, **extra):
        tpl = template or self.template
        body = {"mode": "GENERATE", "commonName": cn or f"{unique('leaf')}.example.com",
                "ttlValue": extra.pop("ttl", 86400), **extra}
        resp = self.admin.issue(self.sid, tpl["templateId"], body)
        return Leaf(resp, self.dir / f"leaf-{resp['serialNumber']}.pem")

    def revoke(self, cert_id, reason="KEY_COMPROMISE"):
        body = None if reason is None else {"reason": reason}
        return ok(self.admin.post(f"/{self.sid}/certs/{cert_id}/revoke", body))

    def file(self, name, data):
        path = self.dir / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
        return path


def template_body(parent, alg="EC", size=256, **extra):
    body = {
        "name": unique(f"tpl-{alg.lower()}"),
        "parentCertId": parent,
        "maxTTL": 90 * 86400,
        "keyInfo": {"algorithm": alg, "keySize": size},
        "keyUsage": DEFAULT_KU["EC" if alg == "ECDSA" else alg],
        "extendedKeyUsage": ["SERVER_AUTHENTICATION", "CLIENT_AUTHENTICATION"],
        "subjectInfo": {"organization": "pcad tests", "country": "KR"},
    }
    body.update(extra)
    return body


def build_chain(admin, sid, workdir, root_key=("EC", 256), int_key=("EC", 256),
                leaf_key=("EC", 256), label=None):
    """`root_key` / `int_key`: (algorithm, keySize[, signatureAlgorithm])."""
    root = admin.new_issuer(sid, issuer_body(*root_key, max_depth=1, ttl=10 * 365 * 86400))
    inter = admin.new_issuer(sid, issuer_body(*int_key, kind="INTERMEDIATE",
                                              parent=root["certId"], max_depth=0,
                                              ttl=5 * 365 * 86400))
    tpl = admin.create_template(sid, template_body(inter["certId"], *leaf_key))
    return Chain(admin, sid, root, inter, tpl, workdir,
                 label or f"{root_key[0]}-{int_key[0]}-{secrets.token_hex(2)}")


# --------------------------------------------------------------------------------------------
# URLs and HTTP


def store_path(appkey, sid, edition="ca-stores"):
    return f"/v2.0/appkeys/{appkey}/{edition}/{sid}"


def public_url(pcad, appkey, sid, rest="", edition="ca-stores"):
    """A URL on the plain-HTTP public listener."""
    return f"{pcad.public_url}{store_path(appkey, sid, edition)}{rest}"


def tls_url(pcad, appkey, sid, rest="", edition="ca-stores"):
    """The same route on the mutual-TLS API listener."""
    return f"{pcad.api_url}{store_path(appkey, sid, edition)}{rest}"


def anon_get(pcad, url, **kw):
    """GET with no client certificate (public listener, or the TLS listener trusting ca.pem)."""
    return requests.get(url, verify=pcad.ca_pem, timeout=30, **kw)


def raw_get(pcad, path, headers=None):
    """GET `path` on the public listener byte for byte (no client-side re-quoting).
    Returns (status, headers dict lower-cased, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", pcad.public_port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def http_date(text):
    return email.utils.parsedate_to_datetime(text).astimezone(dt.timezone.utc)


# --------------------------------------------------------------------------------------------
# OCSP


def ocsp_url(pcad, appkey, sid, edition="ca-stores"):
    return public_url(pcad, appkey, sid, "/ocsp", edition)


def build_request(cert, issuer, algorithm=None, nonce=None):
    """An OCSP request (DER) for one certificate, with Python `cryptography`."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def build_request_by_hash(issuer, serial, algorithm=None):
    """An OCSP request naming `issuer` and an arbitrary serial (a certificate never issued)."""
    algorithm = algorithm or hashes.SHA1()
    name_hash = digest(algorithm, issuer.subject.public_bytes())
    key_hash = digest(algorithm, spki_bits(issuer))
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial,
                                                                algorithm)
    return builder.build().public_bytes(serialization.Encoding.DER)


def openssl_request(issuer_path, cert_paths, out_path, *, nonce=True, digest_opt=None):
    """`openssl ocsp -issuer I [-sha256] -cert A [-cert B] -reqout out` -> the DER."""
    args = ["openssl", "ocsp", "-issuer", issuer_path]
    if digest_opt:
        args.append(digest_opt)  # must come before -cert
    for p in cert_paths:
        args += ["-cert", p]
    if not nonce:
        args.append("-no_nonce")
    args += ["-reqout", out_path]
    sh(args, check=True)
    return Path(out_path).read_bytes()


def post_ocsp(url, der, content_type="application/ocsp-request", headers=None, verify=None):
    hdrs = {} if content_type is None else {"Content-Type": content_type}
    hdrs.update(headers or {})
    return requests.post(url, data=der, headers=hdrs, timeout=30, verify=verify)


def b64url_nopad(der):
    """The seed's form: base64url, no padding."""
    return base64.urlsafe_b64encode(der).decode().rstrip("=")


def b64_std(der):
    return base64.b64encode(der).decode()


def b64_percent(der, lower=False):
    """RFC 6960 Appendix A: standard base64, then URL-encoded (`+` `/` `=` as %2B %2F %3D)."""
    text = urllib.parse.quote(b64_std(der), safe="")
    return text.replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d") if lower \
        else text


def load_response(body):
    return ocsp.load_der_ocsp_response(body)


def digest(algorithm, data):
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def spki_bits(cert):
    """The value of the subjectPublicKey BIT STRING (without its unused-bits octet): what
    issuerKeyHash and responderID byKey hash (RFC 6960 §4.1.1, §4.2.1)."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    _, kids = der_children(spki)
    tag, value = kids[1]
    assert tag == 0x03 and value[0] == 0, "subjectPublicKey BIT STRING"
    return value[1:]


def key_hash_sha1(cert):
    return hashlib.sha1(spki_bits(cert)).digest()


def verify_signature(issuer_cert, signature, data, hash_algorithm):
    """Raises InvalidSignature unless `signature` over `data` verifies with the issuer's key."""
    key = issuer_cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(hash_algorithm))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        assert hash_algorithm is None
        key.verify(signature, data)
    else:
        raise AssertionError(f"unexpected key type {type(key)}")


def respin_verify(resp_path, issuer_path, chain_path, cert_paths):
    """`openssl ocsp -respin R -issuer I -CAfile C -cert L... -no_nonce`: returns the output."""
    args = ["openssl", "ocsp", "-respin", resp_path, "-issuer", issuer_path, "-CAfile",
            chain_path, "-no_nonce"]
    for p in cert_paths:
        args += ["-cert", p]
    proc = sh(args)
    text = out(proc)
    assert proc.returncode == 0 and "Response verify OK" in text, text
    return text


# --------------------------------------------------------------------------------------------
# DER walking (just enough for CRLs and SPKIs)


def der_tlv(data, i=0):
    """(tag, content start, content end) of the TLV at offset `i`."""
    tag = data[i]
    length = data[i + 1]
    j = i + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[j:j + n], "big")
        j += n
    return tag, j, j + length


def der_walk(content):
    """[(tag, value bytes), ...] of the TLVs that make up `content`."""
    items, i = [], 0
    while i < len(content):
        tag, s, e = der_tlv(content, i)
        items.append((tag, content[s:e]))
        i = e
    return items


def der_children(data, start=0):
    """(tag of the TLV at `start`, [(tag, value bytes), ...] of its children)."""
    tag, s, e = der_tlv(data, start)
    return tag, der_walk(data[s:e])


def der_tlv_encode(tag, content):
    """One DER TLV."""
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + length + content


def der_integer(n):
    return der_tlv_encode(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def crl_tbs_fields(der):
    """TBSCertList's fields as [(tag, value bytes)], e.g. tags 02 30 30 17 17 [30] a0."""
    _, outer = der_children(der)
    tbs_tag, tbs = outer[0]
    assert tbs_tag == 0x30
    return der_walk(tbs)


def revoked_certificates_field(der):
    """The raw `revokedCertificates` SEQUENCE content, or None when the field is absent."""
    fields = crl_tbs_fields(der)
    times = [k for k, (t, _) in enumerate(fields) if t in (0x17, 0x18)]
    assert times, "no thisUpdate"
    for tag, value in fields[times[-1] + 1:]:
        if tag == 0x30:
            return value
    return None


# --------------------------------------------------------------------------------------------
# CRL


def crl_number(crl):
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def fetch_crl(pcad, appkey, sid, issuer_id, edition="ca-stores"):
    """The issuer's CRL (DER) from the public listener: (cryptography CRL, der bytes)."""
    r = anon_get(pcad, public_url(pcad, appkey, sid, f"/certs/{issuer_id}/crl/der", edition))
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return x509.load_der_x509_crl(r.content), r.content


def entry_reason(entry):
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


# --------------------------------------------------------------------------------------------
# pkilint


def pkilint(tool, path, *args):
    """Runs a pkilint CLI (`lint_crl`, `lint_ocsp_response`) with `-s ALL -f JSON`. Returns the
    findings [{severity, code, message, node, validator}]; asserts that it ran and that its exit
    code is the number of findings (pkilint's convention)."""
    exe = VENV_BIN / tool
    proc = sh([exe, "lint", *args, "-s", "ALL", "-f", "JSON", path])
    assert proc.stdout.strip().startswith("{"), f"{tool} did not run:\n{out(proc)}"
    results = json.loads(proc.stdout)["results"]
    findings = [{"node": r["node_path"], "validator": r["validator"], **d}
                for r in results for d in r["finding_descriptions"]]
    assert proc.returncode == min(len(findings), 255), (proc.returncode, findings)
    return findings


def serious(findings):
    return [f for f in findings if f["severity"] in ("ERROR", "FATAL")]


# Issuer chains used by both modules: label -> (ROOT, INTERMEDIATE) as (algorithm, keySize,
# signatureAlgorithm): CRLs and OCSP responses must follow each issuer's signatureAlgorithm.
CHAIN_KEYS = {
    "RSA": (("RSA", 2048, "SHA256_WITH_RSA"), ("RSA", 2048, "SHA384_WITH_RSA")),
    "EC": (("EC", 384, "SHA384_WITH_ECDSA"), ("EC", 256, "SHA512_WITH_ECDSA")),
    "ED25519": (("ED25519", 256, "ED25519"), ("ED25519", 256, "ED25519")),
}
