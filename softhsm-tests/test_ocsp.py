"""OCSP (API.md "OCSP", seed's OCSP routes): real clients (openssl ocsp, gnutls ocsptool) against
the public listener, POST and every GET encoding, response fields checked with Python
cryptography, pkilint, RFC 5019 caching, unsigned error answers, revocation taking effect at once,
restarts, several CertIDs per request, and every issuer key family (RSA, EC, Ed25519)."""

import base64
import concurrent.futures
import datetime as dt
import hashlib
import os
import secrets
import time
import urllib.parse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from pcadtest import SIGNATURE_OIDS, extension, issuer_body, ok, parse_timestamp, unique
from revocation_helpers import (
    CHAIN_KEYS, MALFORMED, UNAUTHORIZED, anon_get, b64_percent, b64_std, b64url_nopad,
    build_chain, build_request, build_request_by_hash, der_integer, der_tlv_encode, http_date,
    key_hash_sha1, load_response, ocsp_url, openssl_request, out, pkilint, post_ocsp, raw_get,
    respin_verify, serious, sh, spki_bits, store_path, template_body, tls_url, verify_signature,
)

REFRESH_HOURS = 2  # not the default (1): nextUpdate - thisUpdate must be 2 x 2 h
LABELS = list(CHAIN_KEYS)
OCSP_CT = "application/ocsp-response"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ocsp")


@pytest.fixture(scope="module")
def store(admin):
    return admin.create_store(unique("ocsp"), crlActive=True, crlRefreshPeriod=7,
                              ocspActive=True, ocspRefreshPeriod=REFRESH_HOURS)


@pytest.fixture(scope="module")
def chains(admin, store, workdir):
    return {label: build_chain(admin, store["caStoreId"], workdir, root_key, int_key,
                               label=label)
            for label, (root_key, int_key) in CHAIN_KEYS.items()}


@pytest.fixture(scope="module")
def url(pcad, appkey, store):
    return ocsp_url(pcad, appkey, store["caStoreId"])


def aia_ocsp(cert):
    ext = extension(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if ext is None:
        return []
    return [d.access_location.value for d in ext.value
            if d.access_method == AuthorityInformationAccessOID.OCSP]


def ask(chain, leaves, url, *, nonce=True, digest=None, issuer_path=None, ca_path=None,
        resp_name="resp.der"):
    """`openssl ocsp -issuer I [-sha256] -cert L... -url U -CAfile C [-no_nonce] -respout R`.
    Returns (output text, response DER); asserts exit 0 and `Response verify OK`."""
    respout = chain.dir / resp_name
    args = ["openssl", "ocsp", "-issuer", issuer_path or chain.int_path]
    if digest:
        args.append(digest)  # openssl: the digest must come before -cert
    for leaf in leaves:
        args += ["-cert", leaf if isinstance(leaf, os.PathLike) else leaf.path]
    args += ["-url", url, "-CAfile", ca_path or chain.chain_path, "-respout", respout]
    if not nonce:
        args.append("-no_nonce")
    proc = sh(args)
    text = out(proc)
    assert proc.returncode == 0 and "Response verify OK" in text, text
    return text, respout.read_bytes()


def post(url, der, **kw):
    r = post_ocsp(url, der, **kw)
    assert r.status_code == 200, (r.status_code, r.content[:200])
    assert r.headers["Content-Type"] == OCSP_CT
    return r


def single(resp):
    """The only SingleResponse of a successful response."""
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, resp.response_status
    items = list(resp.responses)
    assert len(items) == 1, items
    return items[0]


def check_signed_by(resp, issuer_cert, issuer_detail):
    """The response is signed by the issuer's own key, responderID byKey."""
    assert resp.responder_name is None
    assert resp.responder_key_hash == key_hash_sha1(issuer_cert)
    assert resp.signature_algorithm_oid.dotted_string == \
        SIGNATURE_OIDS[issuer_detail["signatureAlgorithm"]]
    verify_signature(issuer_cert, resp.signature, resp.tbs_response_bytes,
                     resp.signature_hash_algorithm)


def check_cache_headers(headers, resp):
    """RFC 5019 §6 headers of a signed answer, consistent with the response inside."""
    headers = {k.lower(): v for k, v in headers.items()}
    tokens = cache_control(headers)
    n = max_age(tokens)
    assert sorted(tokens) == sorted([f"max-age={n}", "public", "no-transform",
                                     "must-revalidate"]), tokens
    assert 0 < n <= REFRESH_HOURS * 3600, n
    assert n <= (resp.next_update_utc - dt.datetime.now(dt.timezone.utc)).total_seconds() + 1
    assert http_date(headers["last-modified"]) == resp.this_update_utc
    assert http_date(headers["expires"]) == resp.next_update_utc
    assert resp.next_update_utc - resp.this_update_utc == dt.timedelta(hours=2 * REFRESH_HOURS)
    assert headers.get("etag"), headers
    return headers


# ---------------------------------------------------------------------------------------------
# openssl ocsp: good, then revoked at once


@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no_nonce"])
@pytest.mark.parametrize("label", LABELS)
def test_openssl_good_then_revoked(pcad, appkey, chains, url, label, nonce):
    chain = chains[label]
    leaf = chain.issue()
    assert aia_ocsp(leaf.cert) == [url], "the AIA OCSP URL is the store's public /ocsp route"
    text, _ = ask(chain, [leaf], aia_ocsp(leaf.cert)[0], nonce=nonce)
    assert f"{leaf.path}: good" in text, text

    revoked = chain.revoke(leaf.cert_id, "KEY_COMPROMISE")
    text, der = ask(chain, [leaf], url, nonce=nonce)  # the very next query
    assert f"{leaf.path}: revoked" in text, text
    assert "Reason: keyCompromise" in text, text
    status = single(load_response(der))
    assert status.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert status.revocation_reason == x509.ReasonFlags.key_compromise
    assert status.revocation_time_utc == parse_timestamp(revoked["revokedAt"])


@pytest.mark.parametrize("label", LABELS)
def test_sha256_and_other_certid_hashes(pcad, appkey, chains, url, label):
    chain = chains[label]
    leaf = chain.issue()
    text, der = ask(chain, [leaf], url, digest="-sha256", nonce=False)
    assert f"{leaf.path}: good" in text, text
    for algorithm in (hashes.SHA256(), hashes.SHA384(), hashes.SHA512(), hashes.SHA1()):
        r = post(url, build_request(leaf.cert, chain.int_cert, algorithm))
        resp = load_response(r.content)
        check_cache_headers(r.headers, resp)
        status = single(resp)
        assert status.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert isinstance(status.hash_algorithm, type(algorithm)), "CertID echoed exactly"
        h = hashlib.new(algorithm.name)
        h.update(spki_bits(chain.int_cert))
        assert status.issuer_key_hash == h.digest()
        h = hashlib.new(algorithm.name)
        h.update(chain.int_cert.subject.public_bytes())
        assert status.issuer_name_hash == h.digest()
        assert status.serial_number == leaf.cert.serial_number
        check_signed_by(resp, chain.int_cert, chain.int)
    # A revoke re-signs the SHA-256 answer too (it was cached by the first request).
    chain.revoke(leaf.cert_id, "SUPERSEDED")
    text, _ = ask(chain, [leaf], url, digest="-sha256", nonce=False)
    assert f"{leaf.path}: revoked" in text and "Reason: superseded" in text, text
    for algorithm in (hashes.SHA384(), hashes.SHA512()):
        resp = load_response(post(url, build_request(leaf.cert, chain.int_cert, algorithm)).content)
        assert single(resp).certificate_status == ocsp.OCSPCertStatus.REVOKED, algorithm.name


def test_certid_without_null_parameters_is_echoed_exactly(pcad, appkey, chains, url):
    """Some clients encode the CertID's hashAlgorithm without the NULL parameters: the response
    must echo that CertID byte for byte (API.md: "echoes the request's CertID exactly")."""
    chain = chains["RSA"]
    leaf = chain.issue()
    sha1_no_params = der_tlv_encode(0x30, der_tlv_encode(0x06, bytes.fromhex("2b0e03021a")))
    cert_id = der_tlv_encode(0x30, sha1_no_params
                             + der_tlv_encode(0x04, hashlib.sha1(
                                 chain.int_cert.subject.public_bytes()).digest())
                             + der_tlv_encode(0x04, key_hash_sha1(chain.int_cert))
                             + der_integer(leaf.cert.serial_number))
    request = der_tlv_encode(0x30, der_tlv_encode(0x30, der_tlv_encode(0x30, der_tlv_encode(
        0x30, cert_id))))
    ocsp.load_der_ocsp_request(request)  # well-formed
    for r in (post(url, request), anon_get(pcad, f"{url}/{b64url_nopad(request)}")):
        assert r.status_code == 200 and cert_id in r.content, "CertID not echoed exactly"
        resp = load_response(r.content)
        assert single(resp).certificate_status == ocsp.OCSPCertStatus.GOOD
        assert single(resp).serial_number == leaf.cert.serial_number
        check_signed_by(resp, chain.int_cert, chain.int)
        path = chain.file("no-null.der", r.content)
        respin_verify(path, chain.int_path, chain.chain_path, [leaf.path])


# ---------------------------------------------------------------------------------------------
# GET encodings


def special_request(chain, leaf):
    """An OCSP request (with a nonce, which the responder ignores) whose standard base64 holds
    `+`, `/` and `=` padding, so that every encoding variant is exercised."""
    for _ in range(5000):
        der = build_request(leaf.cert, chain.int_cert, nonce=secrets.token_bytes(
            secrets.choice((16, 17, 18))))
        text = b64_std(der)
        if "+" in text and "/" in text and text.endswith("="):
            return der
    raise AssertionError("no request with + / and = found")


def get_variants(der):
    std = b64_std(der)
    q = urllib.parse.quote
    return {
        "base64url-nopad (seed)": b64url_nopad(der),
        "base64url-padded": q(base64.urlsafe_b64encode(der).decode(), safe=""),
        "base64-percent (RFC 6960 A)": b64_percent(der),
        "base64-percent-lowercase": b64_percent(der, lower=True),
        "base64-raw (+ / = as is)": std,
        "plus-as-%20": std.replace("+", "%20").replace("=", "%3D"),
        "raw-plus, %2F, %3D": q(std, safe="+"),
        "raw-slash, %2B, %3D": q(std, safe="/"),
    }


@pytest.mark.parametrize("label", ["RSA", "ED25519"])
def test_get_encodings(pcad, appkey, store, chains, label):
    chain = chains[label]
    leaf = chain.issue()
    base = store_path(appkey, store["caStoreId"]) + "/ocsp/"
    requests_ = {"python": special_request(chain, leaf),
                 "openssl": openssl_request(chain.int_path, [leaf.path], chain.dir / "req.der",
                                            nonce=False)}
    assert any(c in b64_std(requests_["python"]) for c in "+/")
    tried = []
    for origin, der in requests_.items():
        variants = get_variants(der)
        for name, encoded in variants.items():
            for prefix in (base, base.replace("/ca-stores/", "/cas/")):
                status, headers, body = raw_get(pcad, prefix + encoded)
                where = f"{origin} {name} {prefix + encoded}"
                assert status == 200, (where, status, body[:200])
                assert headers["content-type"] == OCSP_CT, where
                resp = load_response(body)
                assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, \
                    (where, body[:10].hex())
                assert single(resp).certificate_status == ocsp.OCSPCertStatus.GOOD, where
                assert single(resp).serial_number == leaf.cert.serial_number, where
                path = chain.file("get-resp.der", body)
                respin_verify(path, chain.int_path, chain.chain_path, [leaf.path])
                tried.append(where)
    assert len(tried) == 2 * 2 * len(get_variants(b"x"))


def test_get_and_post_on_the_tls_listener_without_client_cert(pcad, appkey, store, chains):
    chain = chains["EC"]
    leaf = chain.issue()
    der = build_request(leaf.cert, chain.int_cert)
    for edition in ("ca-stores", "cas"):
        target = tls_url(pcad, appkey, store["caStoreId"], "/ocsp", edition)
        r = post_ocsp(target, der, verify=pcad.ca_pem)
        assert r.status_code == 200 and r.headers["Content-Type"] == OCSP_CT, r.content[:100]
        assert single(load_response(r.content)).certificate_status == ocsp.OCSPCertStatus.GOOD
        r = anon_get(pcad, f"{target}/{b64url_nopad(der)}")
        assert r.status_code == 200 and r.headers["Content-Type"] == OCSP_CT, r.content[:100]
        assert single(load_response(r.content)).certificate_status == ocsp.OCSPCertStatus.GOOD


# ---------------------------------------------------------------------------------------------
# Response contents (Python cryptography), gnutls ocsptool, pkilint


@pytest.mark.parametrize("label", LABELS)
def test_response_fields(pcad, appkey, chains, url, label):
    chain = chains[label]
    leaf = chain.issue()
    nonce = secrets.token_bytes(16)
    r = post(url, build_request(leaf.cert, chain.int_cert, nonce=nonce))
    now = dt.datetime.now(dt.timezone.utc)
    resp = load_response(r.content)
    status = single(resp)
    assert status.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert status.serial_number == leaf.cert.serial_number
    assert isinstance(status.hash_algorithm, hashes.SHA1)
    assert status.issuer_key_hash == key_hash_sha1(chain.int_cert)
    assert status.issuer_name_hash == hashlib.sha1(chain.int_cert.subject.public_bytes()).digest()
    check_signed_by(resp, chain.int_cert, chain.int)
    # producedAt = thisUpdate = signing time; nextUpdate = thisUpdate + 2 x refresh period.
    assert resp.produced_at_utc == resp.this_update_utc
    assert resp.next_update_utc is not None
    assert resp.next_update_utc - resp.this_update_utc == dt.timedelta(hours=2 * REFRESH_HOURS)
    age = (now - resp.this_update_utc).total_seconds()
    assert -60 < age <= REFRESH_HOURS * 3600 + 60, f"thisUpdate {resp.this_update_utc} vs {now}"
    # Nonces are ignored and not echoed (RFC 5019 §4).
    assert not any(isinstance(e.value, x509.OCSPNonce) for e in resp.extensions)
    assert not any(isinstance(e.value, x509.OCSPNonce) for e in resp.single_extensions)

    # The ROOT answers for its INTERMEDIATE the same way.
    text, der = ask(chain, [chain.int_path], url, issuer_path=chain.root_path,
                    ca_path=chain.root_path, nonce=False, resp_name="int-resp.der")
    assert f"{chain.int_path}: good" in text, text
    resp = load_response(der)
    assert single(resp).serial_number == chain.int_cert.serial_number
    check_signed_by(resp, chain.root_cert, chain.root)


def test_revoked_intermediate_via_root(pcad, appkey, admin, store, chains, url):
    chain = chains["EC"]
    spare = admin.new_issuer(store["caStoreId"], issuer_body(
        "EC", 256, kind="INTERMEDIATE", parent=chain.root["certId"], max_depth=0, ttl=86400 * 30))
    spare_path = chain.file("spare.pem", spare["certificatePem"])
    text, _ = ask(chain, [spare_path], url, issuer_path=chain.root_path,
                  ca_path=chain.root_path, resp_name="spare.der")
    assert f"{spare_path}: good" in text, text
    chain.revoke(spare["certId"], "CA_COMPROMISE")
    text, _ = ask(chain, [spare_path], url, issuer_path=chain.root_path,
                  ca_path=chain.root_path, resp_name="spare.der")
    assert f"{spare_path}: revoked" in text and "Reason: cACompromise" in text, text


def test_unspecified_revocation(pcad, appkey, chains, url):
    chain = chains["EC"]
    leaf = chain.issue()
    chain.revoke(leaf.cert_id, None)  # no body: UNSPECIFIED
    resp = load_response(post(url, build_request(leaf.cert, chain.int_cert)).content)
    status = single(resp)
    assert status.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert status.revocation_reason in (None, x509.ReasonFlags.unspecified)


@pytest.mark.parametrize("label", LABELS)
def test_gnutls_ocsptool(pcad, appkey, chains, url, label):
    chain = chains[label]
    leaf = chain.issue()
    # --ask without a URL: ocsptool takes the OCSP URL from the certificate's AIA.
    resp_path = chain.dir / "gnutls.der"
    proc = sh(["ocsptool", "--ask", "--load-cert", leaf.path, "--load-issuer", chain.int_path,
               "--outfile", resp_path])
    text = out(proc)
    assert proc.returncode == 0, text
    assert "Certificate Status: good" in text and "Verifying OCSP Response: Success." in text, \
        text

    proc = sh(["ocsptool", "-j", "-S", resp_path])
    assert proc.returncode == 0 and "Response Status: Successful" in proc.stdout, out(proc)
    proc = sh(["ocsptool", "-e", "--load-signer", chain.int_path, "-S", resp_path])
    assert proc.returncode == 0 and "Verifying OCSP Response: Success." in out(proc), out(proc)
    # The wrong signer fails: the verification above is real.
    proc = sh(["ocsptool", "-e", "--load-signer", chain.root_path, "-S", resp_path])
    assert proc.returncode != 0 and "Verifying OCSP Response: Success." not in out(proc)

    # A request made by ocsptool, sent with POST.
    req_path = chain.dir / "gnutls-req.der"
    sh(["ocsptool", "-q", "--load-cert", leaf.path, "--load-issuer", chain.int_path,
        "--outfile", req_path], check=True)
    chain.revoke(leaf.cert_id, "AFFILIATION_CHANGED")
    body = post(url, req_path.read_bytes()).content
    resp_path.write_bytes(body)
    proc = sh(["ocsptool", "-e", "--load-signer", chain.int_path, "-S", resp_path])
    text = out(proc)
    assert proc.returncode == 0 and "Verifying OCSP Response: Success." in text, text
    assert "Certificate Status: revoked" in text, text
    proc = sh(["ocsptool", f"--ask={url}", "--load-cert", leaf.path, "--load-issuer",
               chain.int_path, "--outfile", resp_path])
    assert "Certificate Status: revoked" in out(proc), out(proc)


@pytest.mark.parametrize("label", LABELS)
def test_pkilint_ocsp_response(pcad, appkey, chains, url, label):
    chain = chains[label]
    leaf = chain.issue()
    findings = {}
    for state in ("good", "revoked"):
        if state == "revoked":
            chain.revoke(leaf.cert_id, "PRIVILEGE_WITHDRAWN")
        body = post(url, build_request(leaf.cert, chain.int_cert)).content
        path = chain.file(f"lint-{state}.der", body)
        findings[state] = pkilint("lint_ocsp_response", path)
        assert serious(findings[state]) == [], findings[state]
    assert single(load_response(body)).certificate_status == ocsp.OCSPCertStatus.REVOKED


def test_signed_request_is_answered(pcad, appkey, chains, url):
    """RFC 6960 §4.1.2: a requestor may sign its request (requestorName, optionalSignature);
    a responder that does not require signatures answers it."""
    chain = chains["EC"]
    leaf = chain.issue()
    tls = pcad.tls
    der = chain.dir / "signed-req.der"
    sh(["openssl", "ocsp", "-issuer", chain.int_path, "-cert", leaf.path, "-signer",
        tls / "admin.pem", "-signkey", tls / "admin.key", "-reqout", der], check=True)
    resp = load_response(post(url, der.read_bytes()).content)
    assert single(resp).certificate_status == ocsp.OCSPCertStatus.GOOD
    check_signed_by(resp, chain.int_cert, chain.int)


def test_ocsp_linter_reports_errors_and_error_answers_lint_clean(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Bad responder")])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    bad = (ocsp.OCSPResponseBuilder()
           .add_response(cert, cert, hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, now,
                         now - dt.timedelta(hours=1), None, None)
           .responder_id(ocsp.OCSPResponderEncoding.HASH, cert)
           .sign(key, hashes.SHA256()))
    path = tmp_path / "bad.der"
    path.write_bytes(bad.public_bytes(serialization.Encoding.DER))
    codes = {f["code"] for f in serious(pkilint("lint_ocsp_response", path))}
    assert "pkix.ocsp_negative_validity_period" in codes, codes
    for name, body in (("malformed", MALFORMED), ("unauthorized", UNAUTHORIZED)):
        path = tmp_path / f"{name}.der"
        path.write_bytes(body)
        assert serious(pkilint("lint_ocsp_response", path)) == [], name


# ---------------------------------------------------------------------------------------------
# HTTP caching (RFC 5019 §6)


def cache_control(headers):
    return [t.strip().lower() for t in headers.get("cache-control", "").split(",") if t.strip()]


def max_age(tokens):
    ages = [int(t.split("=", 1)[1]) for t in tokens if t.startswith("max-age=")]
    assert len(ages) == 1, tokens
    return ages[0]


def assert_not_cacheable(headers, where):
    tokens = cache_control(headers)
    assert "public" not in tokens, (where, tokens)
    ages = [int(t.split("=", 1)[1]) for t in tokens if t.startswith("max-age=")]
    assert all(a == 0 for a in ages), (where, tokens)


def test_cache_headers_and_etag(pcad, appkey, store, chains, url):
    chain = chains["EC"]
    leaf = chain.issue()
    der = build_request(leaf.cert, chain.int_cert)
    r = post(url, der)
    resp = load_response(r.content)
    headers = check_cache_headers(r.headers, resp)
    tokens = cache_control(headers)
    n = max_age(tokens)
    etag = headers["etag"]

    # GET for the same CertID: the same pre-signed response, the same ETag.
    path = store_path(appkey, store["caStoreId"]) + "/ocsp/" + b64url_nopad(der)
    status, get_headers, body = raw_get(pcad, path)
    assert status == 200 and body == r.content
    assert get_headers["etag"] == etag
    assert sorted(cache_control(get_headers)) == sorted(tokens) or \
        max_age(cache_control(get_headers)) <= n

    status, h304, body = raw_get(pcad, path, {"If-None-Match": etag})
    assert status == 304 and body == b"", (status, body[:100])
    assert h304.get("etag") == etag, f"304 must repeat the ETag (RFC 9110 §15.4.5): {h304}"
    assert "public" in cache_control(h304), f"304 must repeat Cache-Control: {h304}"
    status, _, body = raw_get(pcad, path, {"If-None-Match": '"something-else"'})
    assert status == 200 and body == r.content

    # After a revoke the old ETag no longer matches: no stale 304.
    chain.revoke(leaf.cert_id, "KEY_COMPROMISE")
    status, h2, body = raw_get(pcad, path, {"If-None-Match": etag})
    assert status == 200, "a revoked certificate must not be answered 304 for the good ETag"
    resp = load_response(body)
    assert single(resp).certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert h2["etag"] != etag
    check_cache_headers(h2, resp)


def test_if_none_match_forms(pcad, appkey, store, chains):
    """RFC 9110 §13.1.2: If-None-Match takes a list, `*`, and compares weakly."""
    chain = chains["EC"]
    leaf = chain.issue()
    path = store_path(appkey, store["caStoreId"]) + "/ocsp/" + \
        b64url_nopad(build_request(leaf.cert, chain.int_cert))
    status, headers, _ = raw_get(pcad, path)
    assert status == 200
    etag = headers["etag"]
    assert etag.startswith('"'), etag
    answers = {form: raw_get(pcad, path, {"If-None-Match": form})[0]
               for form in (f'"x", {etag}', "*", f"W/{etag}")}
    assert answers == {f'"x", {etag}': 304, "*": 304, f"W/{etag}": 304}, answers


def test_error_answers_are_not_cacheable(pcad, appkey, chains, url):
    chain = chains["EC"]
    r = post_ocsp(url, b"garbage")
    assert r.content == MALFORMED
    assert_not_cacheable({k.lower(): v for k, v in r.headers.items()}, "malformedRequest")
    unknown = build_request_by_hash(chain.int_cert, secrets.randbits(120))
    r = post_ocsp(url, unknown)
    assert r.content == UNAUTHORIZED
    assert_not_cacheable({k.lower(): v for k, v in r.headers.items()}, "unauthorized")
    status, headers, body = raw_get(pcad, urllib.parse.urlsplit(url).path + "/!!!!")
    assert body == MALFORMED
    assert_not_cacheable(headers, "GET malformedRequest")


# ---------------------------------------------------------------------------------------------
# Unsigned error answers


def test_malformed_requests(pcad, appkey, store, chains, url):
    chain = chains["EC"]
    leaf = chain.issue()
    good = build_request(leaf.cert, chain.int_cert)
    bad_bodies = {
        "garbage": b"garbage",
        "empty": b"",
        "truncated": good[:-5],
        "an OCSP response": MALFORMED,
        "a certificate": leaf.cert.public_bytes(serialization.Encoding.DER),
        "a PEM text": leaf.pem.encode(),
    }
    for name, body in bad_bodies.items():
        r = post_ocsp(url, body)
        assert r.status_code < 500, (name, r.status_code)
        assert r.content == MALFORMED, (name, r.status_code, r.content[:40].hex())
        assert r.headers["Content-Type"] == OCSP_CT, name

    # A wrong Content-Type: malformedRequest or a 4xx, never a signed answer.
    for ct in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        r = post_ocsp(url, good, content_type=ct)
        assert r.content == MALFORMED or 400 <= r.status_code < 500, (ct, r.status_code)

    # Over the 1 MiB body limit: 413 or malformedRequest, never 500.
    for size in (1024 * 1024 + 1, 3 * 1024 * 1024):
        try:
            r = post_ocsp(url, b"\x30\x84" + os.urandom(size))
        except requests.ConnectionError:
            continue  # the server may close the connection while the body is still uploading
        assert r.status_code == 413 or r.content == MALFORMED, (size, r.status_code)
        if r.status_code == 413:
            fails_413 = r.json()["header"]
            assert fails_413["resultCode"] == 41300 and not fails_413["isSuccessful"], fails_413

    # GET: invalid base64, garbage that decodes, an over-long request.
    prefix = store_path(appkey, store["caStoreId"]) + "/ocsp/"
    for name, encoded in {
        "invalid chars": "!!!!notbase64!!!!",
        "bad percent": "%ZZ%ZZ",
        "one char": "A",
        "only padding": "====",
        "garbage": b64url_nopad(b"this is not an OCSP request"),
        "over-long (8 KiB)": b64url_nopad(good + os.urandom(6000)),
        "over-long zeros": "A" * 8000,
    }.items():
        status, headers, body = raw_get(pcad, prefix + encoded)
        assert status < 500, (name, status)
        assert body == MALFORMED, (name, status, body[:40])
        assert headers["content-type"] == OCSP_CT, name
    # Far beyond any sensible URL: whatever the answer, no 500 and no signed answer.
    status, _, body = raw_get(pcad, prefix + "A" * 200_000)
    assert status < 500 and body[:4] != b"\x30\x82", status
    status, _, body = raw_get(pcad, prefix)
    assert status < 500, status


def test_unauthorized_answers(pcad, appkey, admin, store, chains, url, workdir):
    chain = chains["EC"]
    sid = store["caStoreId"]

    def expect(target, der, what):
        r = post_ocsp(target, der)
        assert r.status_code < 500, (what, r.status_code)
        assert r.content == UNAUTHORIZED, (what, r.status_code, r.content[:40].hex())
        assert r.headers["Content-Type"] == OCSP_CT, what

    # A serial this issuer never issued: never `good`.
    expect(url, build_request_by_hash(chain.int_cert, secrets.randbits(120)), "unknown serial")
    expect(url, build_request_by_hash(chain.int_cert, secrets.randbits(120), hashes.SHA256()),
           "unknown serial, SHA-256 CertID")

    # An issuer of another store of the same appkey.
    other_name = unique("ocsp-other")
    other = admin.create_store(other_name, ocspActive=True, ocspRefreshPeriod=1)
    other_chain = build_chain(admin, other["caStoreId"], workdir, label="other")
    other_leaf = other_chain.issue()
    other_url = ocsp_url(pcad, appkey, other["caStoreId"])
    foreign = build_request(other_leaf.cert, other_chain.int_cert)
    expect(url, foreign, "issuer of another store")
    assert single(load_response(post(other_url, foreign).content)).certificate_status == \
        ocsp.OCSPCertStatus.GOOD
    # An issuer the daemon has never seen (a made-up CA).
    expect(url, build_request_by_hash(chains["RSA"].root_cert, 12345), "ROOT as issuer of 12345")

    # The store of another appkey, a store that does not exist.
    own = build_request(chain.issue().cert, chain.int_cert)
    expect(ocsp_url(pcad, unique("elsewhere"), sid), own, "another appkey")
    expect(ocsp_url(pcad, "tenant-b", sid), own, "another appkey (tenant-b)")
    expect(ocsp_url(pcad, appkey, 9_876_543_210), own, "no such store")

    # ocspActive false: from the start, and after a PUT (and back).
    off = admin.create_store(unique("ocsp-off"), ocspActive=False, crlActive=False)
    off_chain = build_chain(admin, off["caStoreId"], workdir, label="off")
    off_leaf = off_chain.issue()
    assert aia_ocsp(off_leaf.cert) == [], "no OCSP URL in certificates of an OCSP-less store"
    off_url = ocsp_url(pcad, appkey, off["caStoreId"])
    off_request = build_request(off_leaf.cert, off_chain.int_cert)
    expect(off_url, off_request, "ocspActive false")
    ok(admin.put(f"/{off['caStoreId']}", {"name": off["name"], "ocspActive": True}))
    resp = load_response(post(off_url, off_request).content)
    assert single(resp).certificate_status == ocsp.OCSPCertStatus.GOOD, \
        "a certificate issued while OCSP was off is a known serial once it is on"
    check_signed_by(resp, off_chain.int_cert, off_chain.int)
    ok(admin.put(f"/{other['caStoreId']}", {"name": other_name, "ocspActive": False}))
    expect(other_url, foreign, "ocspActive switched off")
    ok(admin.put(f"/{other['caStoreId']}", {"name": other_name, "ocspActive": True,
                                            "ocspRefreshPeriod": 1}))
    assert single(load_response(post(other_url, foreign).content)).certificate_status == \
        ocsp.OCSPCertStatus.GOOD, "ocspActive switched back on"

    # A deleted store.
    ok(admin.delete(f"/{other['caStoreId']}"))
    expect(other_url, foreign, "deleted store")


@pytest.mark.parametrize("then", ["ocspActive false", "DELETE"])
def test_no_signed_answers_once_ocsp_is_off_or_the_store_is_gone(pcad, appkey, admin, workdir,
                                                                   then):
    """Switching OCSP on makes the scheduler sign every response of the store (a new store's
    first pass); switching it off (or deleting the store) right after must still leave the store
    answering `unauthorized` once the PUT / DELETE has returned: a pass that was still signing
    must not put its responses back."""
    name = unique("ocsp-race")
    st = admin.create_store(name, ocspActive=False, crlActive=False)
    sid = st["caStoreId"]
    chain = build_chain(admin, sid, workdir, ("EC", 256), ("RSA", 2048), label=f"race-{sid}")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        leaves = list(pool.map(lambda _: chain.issue(ttl=3600), range(150)))
    target = ocsp_url(pcad, appkey, sid)
    ders = [build_request(leaf.cert, chain.int_cert) for leaf in leaves]

    signed = []
    for _ in range(1 if then == "DELETE" else 3):  # the pass may also start after the PUT off
        ok(admin.put(f"/{sid}", {"name": name, "ocspActive": True}))
        if then == "DELETE":
            ok(admin.delete(f"/{sid}"))
        else:
            ok(admin.put(f"/{sid}", {"name": name, "ocspActive": False}))
        time.sleep(0.5)  # let any signing pass that was under way finish
        with requests.Session() as s:
            answers = [s.post(target, data=d,
                              headers={"Content-Type": "application/ocsp-request"}).content
                       for d in ders]
        signed = [a for a in answers if a != UNAUTHORIZED]
        if signed:
            break
    if signed:
        pytest.fail(f"{len(signed)} of {len(ders)} queries got a signed answer after {then} "
                    f"returned (first: {single(load_response(signed[0])).certificate_status})")


def test_mixed_known_and_unknown_certids_never_good_for_unknown(pcad, appkey, chains, url):
    chain = chains["EC"]
    leaf = chain.issue()
    unknown = secrets.randbits(100) | (1 << 99)
    sh(["openssl", "ocsp", "-issuer", chain.int_path, "-cert", leaf.path, "-serial",
               hex(unknown), "-no_nonce", "-reqout", chain.dir / "mixed.der"], check=True)
    der = (chain.dir / "mixed.der").read_bytes()
    r = post_ocsp(url, der)
    assert r.status_code < 500
    if r.content == UNAUTHORIZED:
        return
    resp = load_response(r.content)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, r.content[:20].hex()
    for s in resp.responses:
        if s.serial_number == unknown:
            assert s.certificate_status != ocsp.OCSPCertStatus.GOOD, "unknown serial said good"


# ---------------------------------------------------------------------------------------------
# Several CertIDs, storeInServer false, restarts


@pytest.mark.parametrize("label", LABELS)
def test_several_certids_in_one_request(pcad, appkey, chains, url, label):
    chain = chains[label]
    a, b = chain.issue(), chain.issue()
    text, der = ask(chain, [a, b], url)
    assert f"{a.path}: good" in text and f"{b.path}: good" in text, text
    resp = load_response(der)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert [s.serial_number for s in resp.responses] == \
        [a.cert.serial_number, b.cert.serial_number]
    check_signed_by(resp, chain.int_cert, chain.int)

    chain.revoke(b.cert_id, "CESSATION_OF_OPERATION")
    text, der = ask(chain, [a, b], url, nonce=False)
    assert f"{a.path}: good" in text and f"{b.path}: revoked" in text, text
    assert "Reason: cessationOfOperation" in text, text
    statuses = {s.serial_number: s.certificate_status for s in load_response(der).responses}
    assert statuses == {a.cert.serial_number: ocsp.OCSPCertStatus.GOOD,
                        b.cert.serial_number: ocsp.OCSPCertStatus.REVOKED}


def test_store_in_server_false_leaf_is_good(pcad, appkey, admin, chains, url):
    chain = chains["RSA"]
    tpl = admin.create_template(chain.sid, template_body(chain.int["certId"],
                                                         storeInServer=False))
    leaf = chain.issue(template=tpl)
    assert leaf.cert_id is None
    assert aia_ocsp(leaf.cert) == [url]
    text, der = ask(chain, [leaf], url)
    assert f"{leaf.path}: good" in text, text
    assert single(load_response(der)).serial_number == leaf.cert.serial_number


def test_answers_at_once_after_kill_9(pcad, appkey, chains, url):
    chain = chains["EC"]
    good, bad = chain.issue(), chain.issue()
    revoked = chain.revoke(bad.cert_id, "KEY_COMPROMISE")
    requests_ = {
        "good": build_request(good.cert, chain.int_cert),
        "revoked": build_request(bad.cert, chain.int_cert),
        "revoked-sha256": build_request(bad.cert, chain.int_cert, hashes.SHA256()),
    }
    for restart in ("kill -9", "graceful"):
        if restart == "kill -9":
            pcad.daemon.kill9()
            pcad.daemon.start()
        else:
            pcad.daemon.restart()
        # The first queries after /healthz answers: signed, and the revocation kept.
        for name, der in requests_.items():
            r = post_ocsp(url, der)
            assert r.status_code == 200, (restart, name, r.status_code)
            resp = load_response(r.content)
            assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, \
                (restart, name, r.content[:10].hex())
            status = single(resp)
            check_signed_by(resp, chain.int_cert, chain.int)
            if name == "good":
                assert status.certificate_status == ocsp.OCSPCertStatus.GOOD, restart
            else:
                assert status.certificate_status == ocsp.OCSPCertStatus.REVOKED, (restart, name)
                assert status.revocation_reason == x509.ReasonFlags.key_compromise
                assert status.revocation_time_utc == parse_timestamp(revoked["revokedAt"])
    text, _ = ask(chain, [bad], url)
    assert f"{bad.path}: revoked" in text, text


def test_daemon_still_answers_after_abuse(pcad, appkey, store, chains, url):
    """Run last: after every bad request above (and a burst here) the daemon is up and right."""
    chain = chains["ED25519"]
    prefix = store_path(appkey, store["caStoreId"]) + "/ocsp/"
    for i in range(30):
        post_ocsp(url, os.urandom(i * 37))
        raw_get(pcad, prefix + b64url_nopad(os.urandom(i * 11 + 1)))
    assert pcad.daemon.running, pcad.daemon.log_tail()
    assert requests.get(f"{pcad.public_url}/healthz", timeout=10).status_code == 200
    leaf = chain.issue()
    text, _ = ask(chain, [leaf], url)
    assert f"{leaf.path}: good" in text, text
