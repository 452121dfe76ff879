"""The NAVER Cloud edition (`/api/v1`) against a real daemon on SoftHSM: signed calls with both
header names, Create/Get/List CA, chains, Sign End Csr as ncloud-pca-issuer sends it, Issue End
Cert, revocation seen by OCSP at /ext/{caTag}/ocsp and the CRL, CRL settings, cross-edition
visibility, tenancy, bad input that writes nothing, the role/grant matrix, and the lifecycle
(DESTROYING, the destroy delay across a restart, Delete CA)."""

import base64
import datetime as dt
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtensionOID, NameOID

import pcadtest
import revocation_helpers
from ncp_client import fails, gateway, signature, start_env

V1 = "/api/v1"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = start_env(tmp_path_factory.mktemp("ncp"), destroy_delay="4s")
    yield e
    e.daemon.stop()


@pytest.fixture(scope="module")
def admin(env):
    return env.key("admin")


@pytest.fixture(scope="module")
def root(admin):
    return admin.create_ca("root-ec", key="EC256")


@pytest.fixture(scope="module")
def sub(admin, root):
    return admin.create_ca("sub-rsa", key="RSA2048", period="365", ca_type="PRIVATE_SUB",
                           issuer=root["caInfo"]["caTag"])


def tag(ca):
    return ca["caInfo"]["caTag"]


def csr(cn, key=None, sans=()):
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    return key, b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def ca_count(admin):
    return admin.ok(admin.get(f"{V1}/ca"))["totalCnt"]


def token_keys(env):
    return sorted(o.get("ID", "") for o in pcadtest.token_objects(env))


def write(tmp, name, text):
    p = Path(tmp) / name
    p.write_text(text)
    return str(p)


def ocsp_status(env, ca_tag, leaf_pem, issuer_pem, root_pem):
    with tempfile.TemporaryDirectory() as tmp:
        out = pcadtest.run(["openssl", "ocsp", "-issuer", write(tmp, "i.pem", issuer_pem),
                            "-cert", write(tmp, "l.pem", leaf_pem),
                            "-CAfile", write(tmp, "r.pem", root_pem), "-no_nonce",
                            "-url", f"{env.public_url}/ext/{ca_tag}/ocsp"]).stdout
    line = [l for l in out.splitlines() if l.startswith(str(Path(tmp) / "l.pem")) or ": " in l][0]
    return line.split(": ", 1)[1].strip()


# ---- authentication -----------------------------------------------------------------------

def test_signature_both_header_names_and_refusals(env, admin):
    for h in ("x-ncp-apigw-signature-v2", "x-ncp-apigw-signature-v1"):
        d = admin.with_header(h).ok(admin.with_header(h).get(f"{V1}/ca?pageNo=1"))
        assert d["currentPageNo"] == 1
    before = ca_count(admin)
    body = {"alias": "nope", "keyType": "EC256", "period": "30",
            "x509Parameters": {"commonName": "x"}}
    target = f"{V1}/ca?caType=PRIVATE_ROOT"
    gateway(admin.post(target, body, secret="wrong-secret"), "200")
    stale = int(time.time() * 1000) - 6 * 60 * 1000
    gateway(admin.post(target, body, ts=stale), "200")
    future = int(time.time() * 1000) + 6 * 60 * 1000
    gateway(admin.post(target, body, ts=future), "200")
    gateway(admin.post(target, body, sign=False), "200")
    unknown = env.key("admin")
    unknown.access_key = "NOSUCHKEY"
    gateway(unknown.post(target, body), "200")
    # The signature covers the query: a changed query is refused.
    ts = str(int(time.time() * 1000))
    r = requests.post(env.api_url + f"{V1}/ca?caType=PRIVATE_SUB", json=body, verify=env.ca_pem,
                      headers={"x-ncp-apigw-timestamp": ts, "x-ncp-iam-access-key": admin.access_key,
                               "x-ncp-apigw-signature-v2":
                                   signature(admin.secret, "POST", target, ts, admin.access_key)})
    r.body = r.json()
    gateway(r, "200")
    assert ca_count(admin) == before


# ---- CAs ------------------------------------------------------------------------------------

def test_create_and_get_root_and_sub(env, admin, root, sub):
    info, cert = root["caInfo"], root["caCertInfo"]
    assert info["caType"] == "PRIVATE_ROOT" and info["status"] == "ACTIVE"
    assert isinstance(info["caId"], int) and 0 < info["caId"] < 2**31
    assert isinstance(info["rgstDate"], int) and info["rgstDate"] > 1.7e12
    assert info["urlInfo"]["crl"] == [f"{env.public_url}/ext/{info['caTag']}/crl"]
    assert cert["publicKeyAlgorithm"] == "EC" and cert["country"] == "KR"
    assert cert["notAfterDate"] > cert["notBeforeDate"] > 1.7e12
    assert all(len(g) == 2 and g == g.upper() for g in cert["serialNo"].split(":"))
    got = admin.ok(admin.get(f"{V1}/ca/{info['caTag']}"))
    assert got["caCertInfo"]["certPem"] == cert["certPem"]
    # The sub CA chains to the root; Get CA Chain is sub then root.
    chain = admin.ok(admin.get(f"{V1}/ca/{tag(sub)}/chain"))
    pems = pcadtest.split_pems(chain)
    assert len(pems) == 2 and pems[1].strip() == cert["certPem"].strip()
    pcadtest.openssl_verify(pems[0], pems[1])
    assert sub["caInfo"]["issuerTag"] == info["caTag"]
    assert pcadtest.pkilint_findings(sub["caCertInfo"]["certPem"]) == []
    assert pcadtest.pkilint_findings(cert["certPem"]) == []
    lst = admin.ok(admin.get(f"{V1}/ca"))
    tags = [c["caInfo"]["caTag"] for c in lst["caInfoList"]]
    assert info["caTag"] in tags and tag(sub) in tags
    assert lst["totalPageNo"] == 1


def test_cert_manager_issuer_flow(env, admin, root, sub):
    """What ncloud-pca-issuer does: Get CA (x-ncp-apigw-signature-v1), derive keyType/keyBits from
    the CA certificate, Sign End Csr with period; decode `caChain` as []string."""
    client = admin.with_header("x-ncp-apigw-signature-v1")
    for ca, key in ((root, ec.generate_private_key(ec.SECP256R1())),
                    (sub, rsa.generate_private_key(public_exponent=65537, key_size=2048))):
        got = client.ok(client.get(f"{V1}/ca/{tag(ca)}"))
        ca_cert = x509.load_pem_x509_certificate(got["caCertInfo"]["certPem"].encode())
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        _, pem = csr("app.example.com", key, sans=["app.example.com", "www.example.com"])
        body = {"csrPem": pem, "period": "30", "keyType": "RSA" if is_rsa else "ECDSA",
                "keyBits": "2048" if is_rsa else "256"}
        d = client.ok(client.post(f"{V1}/ca/{tag(ca)}/cert/sign", body))
        assert isinstance(d["caChain"], list) and all(isinstance(c, str) for c in d["caChain"])
        leaf = x509.load_pem_x509_certificate(d["certificate"].encode())
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "app.example.com"
        sans = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        assert set(sans.get_values_for_type(x509.DNSName)) == {"app.example.com", "www.example.com"}
        assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 30
        assert d["issuer"].strip() == got["caCertInfo"]["certPem"].strip()
        root_pem = root["caCertInfo"]["certPem"]
        if ca is root:
            assert [c.strip() for c in d["caChain"]] == [root_pem.strip()]
        else:
            assert len(d["caChain"]) == 2 and d["caChain"][1].strip() == root_pem.strip()
        pcadtest.openssl_verify(d["certificate"], root_pem, d["caChain"][:-1] or ())
        assert pcadtest.pkilint_findings(d["certificate"]) == []
        assert f"{leaf.serial_number:x}".upper().zfill(2) in d["serialNo"].replace(":", "")
        assert ca_cert.subject == leaf.issuer


def test_issue_end_cert_and_get(env, admin, root):
    t = tag(root)
    d = admin.ok(admin.post(f"{V1}/ca/{t}/cert", {
        "keyType": "RSA2048", "period": "90",
        "x509Parameters": {"commonName": "svc.example.com", "altName": "svc.example.com,ops@example.com",
                           "ip": "10.1.2.3", "organization": "Example"}}))
    key = serialization.load_pem_private_key(d["privateKey"].encode(), None)
    leaf = x509.load_pem_x509_certificate(d["certificate"].encode())
    assert pcadtest.public_der(key) == pcadtest.public_der(leaf)
    assert isinstance(d["caChain"], str) and "BEGIN CERTIFICATE" in d["caChain"]
    pcadtest.openssl_verify(d["certificate"], root["caCertInfo"]["certPem"])
    assert pcadtest.pkilint_findings(d["certificate"]) == []
    serial = d["serialNo"]
    got = admin.ok(admin.get(f"{V1}/ca/{t}/cert/{serial}"))
    assert got["certPem"] == d["certificate"] and got["commonName"] == "svc.example.com"
    assert got["publicKeyAlgorithm"] == "RSA" and got["status"] == "VALID"
    assert isinstance(got["caChain"], str)
    # Either case, with or without colons.
    assert admin.ok(admin.get(f"{V1}/ca/{t}/cert/{serial.lower()}"))["serialNo"] == serial
    lst = admin.ok(admin.get(f"{V1}/ca/{t}/cert"))
    assert serial in lst["listCerts"] and lst["totalCnt"] == len(lst["listCerts"])
    fails(admin.get(f"{V1}/ca/{t}/cert/01:02:03"), 404, "NOT_FOUND")
    # The key is never stored: neither its DER nor its PEM body is in the database files.
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    body = "".join(d["privateKey"].strip().splitlines()[1:-1])
    for f in (env.dir / "data").rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert der[-40:] not in blob and body[-40:].encode() not in blob, f"key found in {f}"
    assert "privateKey" not in admin.get(f"{V1}/ca/{t}/cert/{serial}").text


def test_ocsp_and_crl_follow_revocation(env, admin, root):
    t = tag(root)
    url = f"{env.public_url}/ext/{t}/ocsp"
    assert admin.ok(admin.put(f"{V1}/ca/{t}/urls", {"ocsp_servers": url})) is None
    info = admin.ok(admin.get(f"{V1}/ca/{t}"))["caInfo"]
    assert info["urlInfo"]["ocsp"] == [url]
    _, pem = csr("ocsp.example.com")
    d = admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": pem}))
    leaf = x509.load_pem_x509_certificate(d["certificate"].encode())
    aia = leaf.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    assert [a.access_location.value for a in aia] == [url]
    assert d["ocspResponder"] == url
    crl_dp = leaf.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert crl_dp[0].full_name[0].value == f"{env.public_url}/ext/{t}/crl"
    root_pem = root["caCertInfo"]["certPem"]
    assert ocsp_status(env, t, d["certificate"], root_pem, root_pem) == "good"
    assert admin.ok(admin.post(f"{V1}/ca/{t}/cert/{d['serialNo']}/revoke")) is None
    assert ocsp_status(env, t, d["certificate"], root_pem, root_pem) == "revoked"
    # The CRL, at /ext (DER) and through Get CA CRL (PEM), lists it and verifies.
    der = requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10).content
    crl = x509.load_der_x509_crl(der)
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    pem_crl = admin.ok(admin.get(f"{V1}/ca/{t}/crl"))
    with tempfile.TemporaryDirectory() as tmp:
        out = pcadtest.run(["openssl", "crl", "-in", write(tmp, "c.pem", pem_crl), "-CAfile",
                            write(tmp, "r.pem", root_pem), "-noout"], check=False)
        assert "verify OK" in out.stdout + out.stderr, out
    assert admin.ok(admin.get(f"{V1}/ca/{t}/cert/{d['serialNo']}"))["status"] == "REVOKED"
    fails(admin.post(f"{V1}/ca/{t}/cert/{root['caCertInfo']['serialNo']}/revoke"), 400,
          None, "The CA certificate can't be revoked.")
    fails(admin.post(f"{V1}/ca/{t}/cert/{d['serialNo']}/revoke"), 400, "INVALID_CERT")
    # Delete OCSP: certificates issued afterwards carry no OCSP URL.
    assert admin.ok(admin.delete(f"{V1}/ca/{t}/urls")) is None
    d2 = admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr("no-ocsp.example.com")[1]}))
    leaf2 = x509.load_pem_x509_certificate(d2["certificate"].encode())
    with pytest.raises(x509.ExtensionNotFound):
        leaf2.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    assert d2["ocspResponder"] == ""
    # OCSP GET form as well.
    issuer = x509.load_pem_x509_certificate(root_pem.encode())
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    b64 = base64.b64encode(req.public_bytes(serialization.Encoding.DER)).decode()
    r = requests.get(f"{url}/{requests.utils.quote(b64, safe='')}", timeout=10)
    resp = ocsp.load_der_ocsp_response(r.content)
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED


def test_crl_config_rotate_trim(env, admin, root):
    t = tag(root)
    assert admin.ok(admin.get(f"{V1}/ca/{t}/crl/config")) == {"expiry": "3"}
    assert admin.ok(admin.put(f"{V1}/ca/{t}/crl/config", {"expiry": "5"})) == {"expiry": "5"}
    assert admin.ok(admin.get(f"{V1}/ca/{t}/crl/config")) == {"expiry": "5"}
    crl = x509.load_der_x509_crl(requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10).content)
    assert (crl.next_update_utc - crl.last_update_utc) == dt.timedelta(days=5)
    fails(admin.put(f"{V1}/ca/{t}/crl/config", {"expiry": "2"}), 400, "INVALID_INPUT", "expiry")
    fails(admin.put(f"{V1}/ca/{t}/crl/config", {}), 400, "INVALID_INPUT", "expiry is missing")
    n1 = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert admin.ok(admin.post(f"{V1}/ca/{t}/crl/rotate")) is None
    crl2 = x509.load_der_x509_crl(requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10).content)
    assert crl2.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > n1
    assert admin.ok(admin.post(f"{V1}/ca/{t}/trim")) is None
    with tempfile.NamedTemporaryFile("wb", suffix=".der") as f:
        f.write(requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10).content)
        f.flush()
        pcadtest.run(["openssl", "crl", "-inform", "DER", "-in", f.name, "-noout", "-text"])
    # pkilint (PKIX profile) has no serious finding on the CRL.
    with tempfile.NamedTemporaryFile("wb", suffix=".der") as f:
        f.write(requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10).content)
        f.flush()
        assert revocation_helpers.serious(revocation_helpers.pkilint("lint_crl", f.name, "-t", "CRL", "-p", "PKIX")) == []
    ca_der = requests.get(f"{env.public_url}/ext/{t}/ca", timeout=10).content
    assert x509.load_der_x509_certificate(ca_der).public_bytes(serialization.Encoding.PEM).decode() \
        == root["caCertInfo"]["certPem"]


# ---- one CA, two editions; tenancy ----------------------------------------------------------

def test_cross_edition_visibility_and_revocation(env, admin, root):
    t = tag(root)
    v2 = env.v2("admin", "demo")
    stores = pcadtest.ok(v2.get("", params={"page": 0, "size": 100}))["items"]
    store = [s for s in stores if s["name"] == "ncp-api-v1"][0]
    sid = store["caStoreId"]
    a = admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr("cross-a.example.com")[1]}))
    b = admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr("cross-b.example.com")[1]}))
    certs = pcadtest.ok(v2.get(f"/{sid}/certs", params={"page": 0, "size": 1000}))["items"]
    by_serial = {c["serialNumber"].lower().lstrip("0"): c for c in certs}

    def v2_of(serial):
        return by_serial[serial.replace(":", "").lower().lstrip("0")]

    root_v2 = v2_of(root["caCertInfo"]["serialNo"])
    ca_a = v2_of(a["serialNo"])
    assert ca_a["parentCertId"] == root_v2["certId"]
    # Revoked through v2.0: NCP shows it, OCSP says revoked.
    pcadtest.ok(v2.post(f"/{sid}/certs/{ca_a['certId']}/revoke", {"reason": "KEY_COMPROMISE"}))
    assert admin.ok(admin.get(f"{V1}/ca/{t}/cert/{a['serialNo']}"))["status"] == "REVOKED"
    admin.put(f"{V1}/ca/{t}/urls", {"ocsp_servers": "http://x.example/ocsp"})
    root_pem = root["caCertInfo"]["certPem"]
    assert ocsp_status(env, t, a["certificate"], root_pem, root_pem) == "revoked"
    # Revoked through NCP: v2.0 shows it.
    admin.ok(admin.post(f"{V1}/ca/{t}/cert/{b['serialNo']}/revoke"))
    got = pcadtest.ok(v2.get(f"/{sid}/certs/{v2_of(b['serialNo'])['certId']}"))
    assert got["status"] == "REVOKED"


def test_tenancy(env, admin, root):
    other = env.key("other")
    t = tag(root)
    for r in (other.get(f"{V1}/ca/{t}"), other.post(f"{V1}/ca/{t}/cert/sign",
                                                     {"csrPem": csr("x.example.com")[1]}),
              other.put(f"{V1}/ca/{t}", {"status": "DEACTIVATED"}),
              other.get(f"{V1}/ca/{t}/crl")):
        fails(r, 404, "NOT_FOUND", "The CA doesn't exist.")
    assert other.ok(other.get(f"{V1}/ca"))["totalCnt"] == 0
    assert admin.ok(admin.get(f"{V1}/ca/{t}"))["caInfo"]["status"] == "ACTIVE"


# ---- bad input: a clear 400, nothing written -------------------------------------------------

def state(env, admin, root):
    v2 = env.v2("admin", "demo")
    stores = pcadtest.ok(v2.get("", params={"page": 0, "size": 100}))["items"]
    sid = [s for s in stores if s["name"] == "ncp-api-v1"][0]["caStoreId"]
    certs = pcadtest.ok(v2.get(f"/{sid}/certs", params={"page": 0, "size": 1000}))["totalCount"]
    ends = admin.ok(admin.get(f"{V1}/ca/{tag(root)}/cert"))["totalCnt"]
    return ca_count(admin), token_keys(env), certs, ends


def test_bad_input_catalogue_writes_nothing(env, admin, root, sub):
    r, s = tag(root), tag(sub)
    x = {"commonName": "x"}

    def ca(**over):
        b = {"alias": "fresh-ca", "keyType": "EC256", "period": "30", "x509Parameters": x}
        b.update(over)
        return {k: v for k, v in b.items() if v is not None}

    rsa_csr = csr("r.example.com", rsa.generate_private_key(public_exponent=65537, key_size=2048))[1]
    ec_csr = csr("e.example.com")[1]
    root_q = f"{V1}/ca?caType=PRIVATE_ROOT"
    cases = [
        ("POST", f"{V1}/ca", ca(), "EMPTY_CA_TYPE", "ca type is missing"),
        ("POST", f"{V1}/ca?caType=BOGUS", ca(), "INVALID_INPUT", "Invalid ca type"),
        ("POST", root_q, ca(alias=None), "EMPTY_CA_ALIAS", "alias is missing."),
        ("POST", root_q, ca(alias="1abc"), "INVALID_INPUT", "alias"),
        ("POST", root_q, ca(alias="a" * 16), "EXCEED_CA_ALIAS", "alias"),
        ("POST", root_q, ca(alias="root-ec"), "ALREADY_EXIST_ALIAS", "alias already exists"),
        ("POST", root_q, ca(keyType=None), "EMPTY_KEY_TYPE", "keyType"),
        ("POST", root_q, ca(keyType="RSA1024"), "INVALID_X509_KEY_TYPE", "Invalid keyType"),
        ("POST", root_q, ca(period=None), "EMPTY_CA_TTL", "period"),
        ("POST", root_q, ca(period="0"), "INVALID_INPUT_PERIOD", "period"),
        ("POST", root_q, ca(period="3651"), "INVALID_INPUT_PERIOD", "period"),
        ("POST", root_q, ca(period="ten"), "INVALID_INPUT_PERIOD", "period"),
        ("POST", root_q, ca(x509Parameters=None), "EMPTY_X509_PARAMETERS", "x509Parameters"),
        ("POST", root_q, ca(x509Parameters={"country": "KR"}), "EMPTY_COMMON_NAME",
         "common name is missing."),
        ("POST", root_q, ca(x509Parameters={"commonName": "c" * 65}), "EXCEED_COMMON_NAME",
         "common name"),
        ("POST", root_q, ca(x509Parameters={"commonName": "c", "country": "Korea"}),
         "INVALID_INPUT", "country"),
        ("POST", root_q, ca(x509Parameters={"commonName": "c", "ip": "999.1.1.1"}),
         "INVALID_X509_IP", "Invalid ip"),
        ("POST", root_q, ca(x509Parameters={"commonName": "c", "altName": "not a host"}),
         "INVALID_INPUT", "altName"),
        ("POST", f"{root_q}&issuerTag={r}", ca(), "INVALID_INPUT", "issuerTag"),
        ("POST", f"{V1}/ca?caType=PRIVATE_SUB&issuerTag=00000000-00000000", ca(),
         "NOT_EXIST_ISSUER_CA", "issuerTag"),
        # Longer than the issuing sub CA's remaining validity: refused before a key is made.
        ("POST", f"{V1}/ca?caType=PRIVATE_SUB&issuerTag={s}", ca(period="3650"),
         "INVALID_INPUT_PERIOD", "period"),
        ("POST", root_q, "not json", "INVALID_REQUEST", "Invalid request"),
        ("POST", root_q, [1, 2], "INVALID_REQUEST", "Invalid request"),
        ("POST", root_q, "", "INVALID_REQUEST", "body is missing"),
        ("POST", f"{V1}/ca/{r}/cert/sign", {}, "EMPTY_CSR", "csr is missing."),
        ("POST", f"{V1}/ca/{r}/cert/sign", {"csrPem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                            "-----END CERTIFICATE REQUEST-----"},
         "INVALID_INPUT", "Invalid csr."),
        ("POST", f"{V1}/ca/{r}/cert/sign", {"csrPem": ec_csr, "keyType": "RSA"},
         "INVALID_X509_KEY_TYPE", "CSR's keyType and the request body's keyType don't match."),
        ("POST", f"{V1}/ca/{r}/cert/sign", {"csrPem": rsa_csr, "keyType": "RSA", "keyBits": "4096"},
         "INVALID_INPUT", "CSR's keyBits and the request body's keyBits don't match."),
        ("POST", f"{V1}/ca/{r}/cert/sign", {"csrPem": ec_csr, "period": "4000"},
         "INVALID_INPUT_PERIOD", "period"),
        ("POST", f"{V1}/ca/{s}/cert/sign", {"csrPem": ec_csr, "period": "400"},
         "INVALID_INPUT_PERIOD", "The CA validity period can't be exceeded."),
        ("POST", f"{V1}/ca/{r}/cert", {"keyType": "EC256"}, "EMPTY_X509_PARAMETERS",
         "x509Parameters"),
        ("POST", f"{V1}/ca/{r}/cert", {"keyType": "EC384", "x509Parameters": x},
         "INVALID_X509_KEY_TYPE", "keyType"),
        ("POST", f"{V1}/ca/{r}/cert/zz/revoke", None, "INVALID_INPUT_SERIAL_NO", "serial no"),
        ("GET", f"{V1}/ca?pageNo=0", None, "INVALID_INPUT_PAGENUMBBER", "page no"),
        ("PUT", f"{V1}/ca/{r}", {"status": "BOGUS"}, "INVALID_INPUT_STATUS", "status"),
        ("PUT", f"{V1}/ca/{r}", {}, "EMPTY_STATUS", "status is missing."),
        ("PUT", f"{V1}/ca/{r}/urls", {}, "INVALID_INPUT", "ocsp_servers are missing."),
        ("PUT", f"{V1}/ca/{r}/urls", {"ocsp_servers": "ftp://x"}, "INVALID_INPUT", "ocsp_servers"),
        ("POST", f"{V1}/ca/{r}/users", {}, "EMPTY_ID_NO", "idNo is missing."),
        ("POST", f"{V1}/ca/{r}/users", {"idNo": "nobody"}, "INVAILD_ID_NO", "Invalid id no."),
        ("DELETE", f"{V1}/ca/{r}", None, "INVALID_CA_STATUS", "Invalid ca status"),
    ]
    before = state(env, admin, root)
    for method, target, body, code, words in cases:
        if isinstance(body, str):
            resp = admin.call(method, target, raw=body)
        else:
            resp = admin.call(method, target, body)
        fails(resp, 400, code, words)
    fails(admin.post(f"{V1}/ca/{r}/cert/01:02/revoke"), 404, "NOT_FOUND", "certificate")
    fails(admin.get(f"{V1}/ca/00000000-00000000"), 404, "NOT_FOUND", "The CA doesn't exist.")
    r404 = admin.get(f"{V1}/nothing")
    assert r404.status_code == 404 and r404.body["error"]["errorCode"] == "300"
    assert state(env, admin, root) == before


# ---- who may do what -------------------------------------------------------------------------

def routes(t, serial):
    """(method, path, body, need) for every route of one CA; need is READ, OPERATE or ADMIN."""
    return [
        ("GET", f"{V1}/ca", None, "READ"),
        ("POST", f"{V1}/ca?caType=PRIVATE_ROOT", {}, "ADMIN"),
        ("GET", f"{V1}/ca/{t}", None, "READ"),
        ("PUT", f"{V1}/ca/{t}", {"memo": "matrix"}, "ADMIN"),
        ("DELETE", f"{V1}/ca/{t}", None, "ADMIN"),
        ("GET", f"{V1}/ca/{t}/chain", None, "READ"),
        ("GET", f"{V1}/ca/{t}/sub/csr", None, "READ"),
        ("POST", f"{V1}/ca/{t}/sub/sign", {}, "OPERATE"),
        ("POST", f"{V1}/ca/{t}/activate", {}, "ADMIN"),
        ("POST", f"{V1}/ca/{t}/cert", {}, "OPERATE"),
        ("POST", f"{V1}/ca/{t}/cert/sign", {}, "OPERATE"),
        ("GET", f"{V1}/ca/{t}/cert", None, "READ"),
        ("GET", f"{V1}/ca/{t}/cert/{serial}", None, "READ"),
        ("POST", f"{V1}/ca/{t}/cert/01:02/revoke", None, "OPERATE"),
        ("GET", f"{V1}/ca/{t}/crl", None, "READ"),
        ("GET", f"{V1}/ca/{t}/crl/config", None, "READ"),
        ("PUT", f"{V1}/ca/{t}/crl/config", {"expiry": "3"}, "OPERATE"),
        ("POST", f"{V1}/ca/{t}/crl/rotate", None, "OPERATE"),
        ("POST", f"{V1}/ca/{t}/trim", None, "OPERATE"),
        ("PUT", f"{V1}/ca/{t}/urls", {}, "OPERATE"),
        ("DELETE", f"{V1}/ca/{t}/urls", None, "OPERATE"),
        ("GET", f"{V1}/ca/{t}/users", None, "READ"),
        ("POST", f"{V1}/ca/{t}/users", {}, "ADMIN"),
        ("DELETE", f"{V1}/ca/{t}/users/nobody", None, "ADMIN"),
    ]


def test_role_and_grant_matrix(env, admin):
    granted = admin.create_ca("matrix-a")
    other_ca = admin.create_ca("matrix-b")
    ta, tb = tag(granted), tag(other_ca)
    serial = granted["caCertInfo"]["serialNo"]
    viewer, viewer2, other = env.key("viewer"), env.key("viewer2"), env.key("other")
    # The grant: by access key for viewer2; the list shows it; an identity works too.
    assert admin.ok(admin.post(f"{V1}/ca/{ta}/users", {"idNo": viewer2.access_key})) is None
    users = admin.ok(admin.get(f"{V1}/ca/{ta}/users"))
    assert [u["idNo"] for u in users] == [viewer2.access_key]
    nobody = env.key("admin")
    nobody.access_key, nobody.secret = "", ""

    def allowed(r):
        return r.status_code != 401

    for method, path, body, need in routes(ta, serial):
        assert allowed(admin.call(method, path, body)), (method, path)
        rv = viewer.call(method, path, body)
        if need == "READ":
            assert allowed(rv), (method, path, rv.text)
        else:
            gateway(rv, "210")
        rg = viewer2.call(method, path, body)
        if need in ("READ", "OPERATE"):
            assert allowed(rg), ("granted", method, path, rg.text)
        else:
            gateway(rg, "210")
        gateway(nobody.call(method, path, body, sign=False), "200")
        ro = other.call(method, path, body)
        if path.startswith(f"{V1}/ca/"):
            fails(ro, 404, "NOT_FOUND")
    for method, path, body, need in routes(tb, serial):
        rg = viewer2.call(method, path, body)
        if need == "READ":
            assert allowed(rg)
        else:
            gateway(rg, "210")
    # The grant really lets viewer2 issue on its CA, and withdrawing it stops that.
    d = viewer2.ok(viewer2.post(f"{V1}/ca/{ta}/cert/sign", {"csrPem": csr("g.example.com")[1]}))
    assert viewer2.ok(viewer2.post(f"{V1}/ca/{ta}/cert/{d['serialNo']}/revoke")) is None
    assert admin.ok(admin.delete(f"{V1}/ca/{ta}/users/{viewer2.access_key}")) is None
    gateway(viewer2.post(f"{V1}/ca/{ta}/cert/sign", {"csrPem": csr("g2.example.com")[1]}), "210")
    assert admin.ok(admin.get(f"{V1}/ca/{ta}/users")) == []


def test_sighup_reloads_keys(env, admin):
    config = env.config
    old = config.read_text()
    d = env.dir / "ncp"
    (d / "late.access-key").write_text("LATEKEY0000000000001\n")
    (d / "late.secret-key").write_text("late-secret\n")
    os.chmod(d / "late.secret-key", 0o600)
    late = env.key("late")
    gateway(late.get(f"{V1}/ca"), "200")
    config.write_text(old + '\n[[ncp_keys]]\naccess_key = "LATEKEY0000000000001"\n'
                      'secret_file = "ncp/late.secret-key"\nappkey = "demo"\nrole = "VIEWER"\n'
                      'identity = "ncp-late"\n')
    os.kill(env.daemon.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while late.get(f"{V1}/ca").status_code != 200:
        assert time.monotonic() < deadline, "SIGHUP did not load the new key"
        time.sleep(0.2)
    # A secret file others can read refuses the reload; the keys in force stay.
    os.chmod(d / "late.secret-key", 0o644)
    os.kill(env.daemon.pid, signal.SIGHUP)
    time.sleep(1)
    assert late.get(f"{V1}/ca").status_code == 200
    assert "secret" not in Path(env.daemon.log).read_text().replace("secret_file", "").lower() \
        or "late-secret" not in Path(env.daemon.log).read_text()
    assert "late-secret" not in Path(env.daemon.log).read_text()
    os.chmod(d / "late.secret-key", 0o600)
    config.write_text(old)
    os.kill(env.daemon.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while late.get(f"{V1}/ca").status_code != 401:
        assert time.monotonic() < deadline, "SIGHUP did not drop the key"
        time.sleep(0.2)


def test_client_certificate_with_a_role_is_accepted(env, admin, root):
    """A /v2.0-style caller (client certificate) works on /api/v1 for the appkey it names."""
    t = tag(root)

    def call(method, path, identity, appkey="demo", body=None):
        hdrs = {"x-pcad-appkey": appkey} if appkey else {}
        r = requests.request(method, env.api_url + path, json=body, headers=hdrs,
                             cert=env.client_cert(identity) if identity else None,
                             verify=env.ca_pem, timeout=60)
        r.body = r.json()
        return r

    d = call("GET", f"{V1}/ca/{t}", "admin")
    assert d.status_code == 200 and d.body["data"]["caInfo"]["caTag"] == t
    signed = call("POST", f"{V1}/ca/{t}/cert/sign", "admin", body={"csrPem": csr("cc.example.com")[1]})
    assert signed.status_code == 200, signed.text
    assert call("GET", f"{V1}/ca/{t}", "viewer").status_code == 200
    gateway(call("POST", f"{V1}/ca/{t}/cert/sign", "viewer", body={"csrPem": csr("v.example.com")[1]}),
            "210")
    gateway(call("GET", f"{V1}/ca/{t}", "admin", appkey=None), "200")
    gateway(call("GET", f"{V1}/ca/{t}", None), "200")
    # Tenancy holds here too.
    fails(call("GET", f"{V1}/ca/{t}", "admin", appkey="tenant-x"), 404, "NOT_FOUND")


def test_sub_ca_revoked_through_v2_stops_issuing(env, admin, root):
    sub = admin.create_ca("sub-revoked", period="100", ca_type="PRIVATE_SUB", issuer=tag(root))
    admin.ok(admin.post(f"{V1}/ca/{tag(sub)}/cert/sign", {"csrPem": csr("before.example.com")[1]}))
    v2 = env.v2("admin", "demo")
    stores = pcadtest.ok(v2.get("", params={"page": 0, "size": 100}))["items"]
    sid = [s for s in stores if s["name"] == "ncp-api-v1"][0]["caStoreId"]
    cert_id = sub["caCertInfo"]["caCertId"]
    pcadtest.ok(v2.post(f"/{sid}/certs/{cert_id}/revoke", {"reason": "CA_COMPROMISE"}))
    fails(admin.post(f"{V1}/ca/{tag(sub)}/cert/sign", {"csrPem": csr("after.example.com")[1]}), 400,
          None, "revoked")
    crl = x509.load_der_x509_crl(
        requests.get(f"{env.public_url}/ext/{tag(root)}/crl", timeout=10).content)
    serial = int(sub["caCertInfo"]["serialNo"].replace(":", ""), 16)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_v2_issuance_from_an_ncp_ca_shows_in_ncp(env, admin):
    """A leaf issued through a /v2.0 template under an NCP CA's certificate is an end
    certificate of that CA for NCP (listed, readable, revocable), with the CA's /ext CRL URL."""
    ca = admin.create_ca("v2-issued")
    t = tag(ca)
    v2 = env.v2("admin", "demo")
    stores = pcadtest.ok(v2.get("", params={"page": 0, "size": 100}))["items"]
    sid = [s for s in stores if s["name"] == "ncp-api-v1"][0]["caStoreId"]
    tpl = v2.create_template(sid, {
        "name": "from-v2", "parentCertId": ca["caCertInfo"]["caCertId"], "maxTTL": 30 * 86400,
        "keyInfo": {"algorithm": "EC", "keySize": 256}, "keyUsage": ["DIGITAL_SIGNATURE"],
        "extendedKeyUsage": ["SERVER_AUTHENTICATION"]})
    leaf = v2.issue(sid, tpl["templateId"], {"mode": "GENERATE", "commonName": "v2.example.com",
                                             "ttlValue": 86400})
    pem = leaf.get("certificatePem") or leaf.get("certificate")
    cert = x509.load_pem_x509_certificate(pem.encode())
    serial = ":".join(f"{b:02X}" for b in cert.serial_number.to_bytes(16, "big"))
    assert serial in admin.ok(admin.get(f"{V1}/ca/{t}/cert"))["listCerts"]
    got = admin.ok(admin.get(f"{V1}/ca/{t}/cert/{serial}"))
    assert got["commonName"] == "v2.example.com" and got["status"] == "VALID"
    dp = cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert dp[0].full_name[0].value == f"{env.public_url}/ext/{t}/crl"
    admin.ok(admin.post(f"{V1}/ca/{t}/cert/{serial}/revoke"))
    assert admin.ok(admin.get(f"{V1}/ca/{t}/cert/{serial}"))["status"] == "REVOKED"
