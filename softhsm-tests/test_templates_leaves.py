"""Phase 2: templates (seed's Template API) and leaf issuance / revocation (API.md "Issued leaf",
"Revoke", "Template key usage")."""

import base64
import concurrent.futures
import os
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from pcadtest import (
    Api, EDITIONS, HEX_SERIAL, future_date, SIGNATURE_OIDS, aki, extension, fails, issuer_body, key_id,
    load_pem, ok, openssl_verify, parse_timestamp, pkilint_findings, public_der, run, serial_matches,
    ski, split_pems, unique,
)


TEMPLATE_DEFAULTS = {"backDateValidation": 30, "allowIpSans": False, "storeInServer": True,
                     "basicConstraintsValidForNonCa": False, "useCsrCommonName": False,
                     "useCsrSans": False, "signatureBits": 256, "useCsrOtherFields": False}
TEMPLATE_FIELDS = {"templateId", "caStoreId", "createdAt", "updatedAt", "name", "description",
                   "parentCertId", "maxTTL", "maxSpecificDate", "backDateValidation",
                   "allowIpSans", "urlSansWhitelist", "otherSansWhitelist", "storeInServer",
                   "basicConstraintsValidForNonCa", "useCsrCommonName", "useCsrSans", "keyInfo",
                   "signatureBits", "keyUsage", "extendedKeyUsage", "extendedKeyUsageOids",
                   "policies", "subjectInfo", "useCsrOtherFields", "otherFields"}
LEAF_KEYS = [("RSA", 2048), ("EC", 224), ("EC", 256), ("EC", 384), ("EC", 521), ("ED25519", 256)]
LEAF_KIDS = [key_id(a, s) for a, s in LEAF_KEYS]
FORMATS = ["PEM", "DER", "PEM_BUNDLE"]
KEY_FORMATS = ["PEM", "DER", "PKCS8"]
REASONS = ["UNSPECIFIED", "KEY_COMPROMISE", "CA_COMPROMISE", "AFFILIATION_CHANGED", "SUPERSEDED",
           "CESSATION_OF_OPERATION", "CERTIFICATE_HOLD", "PRIVILEGE_WITHDRAWN"]
DEFAULT_KU = {"RSA": ["DIGITAL_SIGNATURE", "KEY_ENCIPHERMENT"], "EC": ["DIGITAL_SIGNATURE"],
              "ED25519": ["DIGITAL_SIGNATURE"]}


def template_body(parent, alg="EC", size=256, *, name=None, max_ttl=90 * 86400, **extra):
    body = {
        "name": name or unique(f"tpl-{key_id(alg, size)}"),
        "description": f"leaf template {key_id(alg, size)}",
        "parentCertId": parent,
        "maxTTL": max_ttl,
        "keyInfo": {"algorithm": alg, "keySize": size},
        "keyUsage": DEFAULT_KU[alg],
        "extendedKeyUsage": ["SERVER_AUTHENTICATION", "CLIENT_AUTHENTICATION"],
        "subjectInfo": {"organization": "pcad tests", "country": "KR"},
    }
    body.update(extra)
    return body


def generate(cn="leaf.example.com", ttl=86400, **extra):
    return {"mode": "GENERATE", "commonName": cn, "ttlValue": ttl, **extra}


def sign(csr_pem, ttl=86400, **extra):
    return {"mode": "SIGN", "csr": csr_pem, "ttlValue": ttl, **extra}


# ---------------------------------------------------------------------------------------------
# Fixtures: a RSA-2048 root (maxDepth 1) above an EC-256 intermediate; one template per leaf key.


@pytest.fixture(scope="module")
def ca(admin):
    store = admin.create_store(unique("leaves"))
    sid = store["caStoreId"]
    root = admin.new_issuer(sid, issuer_body("RSA", 2048, max_depth=1, ttl=10 * 365 * 86400,
                                             cn="Leaf Test Root"))
    inter = admin.new_issuer(sid, issuer_body("EC", 256, kind="INTERMEDIATE",
                                              parent=root["certId"], max_depth=0,
                                              ttl=5 * 365 * 86400, cn="Leaf Test Issuing CA"))
    return {"sid": sid, "root": root, "int": inter}


@pytest.fixture(scope="module")
def templates(admin, ca):
    return {key_id(a, s): admin.create_template(ca["sid"], template_body(ca["int"]["certId"], a, s))
            for a, s in LEAF_KEYS}


def issue_path(ca, template):
    return f"/{ca['sid']}/templates/{template['templateId']}/certificates"


# ---------------------------------------------------------------------------------------------
# Decoding an issued leaf


def der_kind(der):
    """'pkcs1', 'sec1' or 'pkcs8' from the DER layout of a private key."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    assert der[i] == 0x02  # version INTEGER
    nxt = der[i + 2 + der[i + 1]]
    return {0x02: "pkcs1", 0x04: "sec1", 0x30: "pkcs8"}[nxt]


def any_cert(text):
    """A certificate given as PEM or as base64 DER (API.md names the encoding of `certificate`
    only)."""
    if text.lstrip().startswith("-----BEGIN"):
        return load_pem(text)
    return x509.load_der_x509_certificate(base64.b64decode(text))


def decode_leaf(resp, fmt, mode="GENERATE", pkf="PEM", alg="EC"):
    """(certificate, [issuer, ..., root], private key or None), checking the encoding of each."""
    if fmt == "DER":
        assert not resp["certificate"].startswith("-----"), "DER: base64 of the DER"
        cert = x509.load_der_x509_certificate(base64.b64decode(resp["certificate"]))
        issuing = any_cert(resp["issuingCa"])
        chain = [any_cert(c) for c in resp["caChain"]]
    else:
        issuing = load_pem(resp["issuingCa"])
        chain = [load_pem(c) for c in resp["caChain"]]
        text = resp["certificate"]
        pems = split_pems(text)
        cert = load_pem(pems[0])
        if fmt == "PEM":
            assert len(pems) == 1 and "PRIVATE KEY" not in text, "PEM holds the certificate only"
        else:  # PEM_BUNDLE: [private key PEM] + certificate + issuing chain
            assert [load_pem(p) for p in pems[1:]] == chain, "bundle = certificate + caChain"
            if mode == "GENERATE":
                assert "PRIVATE KEY-----" in text
                assert text.index("PRIVATE KEY-----") < text.index("BEGIN CERTIFICATE")
            else:
                assert "PRIVATE KEY" not in text
    assert chain and chain[0] == issuing, "caChain starts with the issuing CA"
    assert serial_matches(resp["serialNumber"], cert)
    assert parse_timestamp(resp["expiration"]) == cert.not_valid_after_utc

    if mode == "SIGN":
        assert resp.get("privateKey") is None, "privateKey is absent in SIGN mode"
        return cert, chain, None
    family = {"RSA": "rsa", "EC": "ec", "ECDSA": "ec", "ED25519": "ed25519"}[alg]
    assert str(resp["privateKeyType"]).lower() == family, resp["privateKeyType"]
    text = resp["privateKey"]
    if pkf == "DER":
        der = base64.b64decode(text)
        key = serialization.load_der_private_key(der, None)
    else:
        header = {"PKCS8": "PRIVATE KEY", "PEM": {"rsa": "RSA PRIVATE KEY",
                                                  "ec": "EC PRIVATE KEY",
                                                  "ed25519": "PRIVATE KEY"}[family]}[pkf]
        assert text.startswith(f"-----BEGIN {header}-----"), text[:40]
        key = serialization.load_pem_private_key(text.encode(), None)
        der = key.private_bytes(serialization.Encoding.DER,
                                serialization.PrivateFormat.PKCS8
                                if pkf == "PKCS8" or family == "ed25519"
                                else serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    expected = "pkcs8" if pkf == "PKCS8" or family == "ed25519" else \
        {"rsa": "pkcs1", "ec": "sec1"}[family]
    assert der_kind(der) == expected
    assert public_der(key) == public_der(cert), "private key does not match the certificate"
    return cert, chain, key


def pem_of(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def verify_leaf(cert, chain, purpose="sslserver"):
    openssl_verify(pem_of(cert), pem_of(chain[-1]), [pem_of(c) for c in chain[:-1]], purpose)


def san_values(cert, kind):
    ext = extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    return [] if ext is None else ext.value.get_values_for_type(kind)


def make_csr(alg="EC", size=256, cn="csr.example.com", dns=(), ips=(), tool="openssl"):
    """(csr_pem, private key) from `openssl req` or from Python cryptography."""
    if tool == "openssl":
        newkey = {"RSA": ["-newkey", f"rsa:{size}"], "ED25519": ["-newkey", "ed25519"]}.get(
            alg, ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{'P-%d' % size}"])
        with tempfile.TemporaryDirectory() as tmp:
            args = ["openssl", "req", "-new", *newkey, "-nodes", "-keyout", f"{tmp}/k.pem",
                    "-subj", f"/CN={cn}", "-out", f"{tmp}/r.csr"]
            sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
            if sans:
                args += ["-addext", "subjectAltName=" + ",".join(sans)]
            run(args)
            key = serialization.load_pem_private_key(Path(f"{tmp}/k.pem").read_bytes(), None)
            return Path(f"{tmp}/r.csr").read_text(), key
    if alg == "RSA":
        key = rsa.generate_private_key(65537, size)
    elif alg == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = ec.generate_private_key({224: ec.SECP224R1(), 256: ec.SECP256R1(),
                                       384: ec.SECP384R1(), 521: ec.SECP521R1()}[size])
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    names = [x509.DNSName(d) for d in dns]
    import ipaddress
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, None if alg == "ED25519" else hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


# ---------------------------------------------------------------------------------------------
# Templates: CRUD


def test_template_create_defaults_get_list(admin, ca):
    sid, parent = ca["sid"], ca["int"]["certId"]
    body = {"name": unique("minimal"), "parentCertId": parent, "maxTTL": 3600,
            "keyInfo": {"algorithm": "EC", "keySize": 256}}
    created = admin.create_template(sid, body)
    assert TEMPLATE_FIELDS <= set(created), TEMPLATE_FIELDS - set(created)
    assert isinstance(created["templateId"], int) and created["caStoreId"] == sid
    for field, value in TEMPLATE_DEFAULTS.items():
        assert created[field] == value, field
    assert created["name"] == body["name"] and created["maxTTL"] == 3600
    parse_timestamp(created["createdAt"])
    for edition in EDITIONS:
        assert ok(admin.with_(edition=edition).get(
            f"/{sid}/templates/{created['templateId']}")) == created

    found = ok(admin.get(f"/{sid}/templates", params={"search": body["name"]}))
    assert [t["templateId"] for t in found["items"]] == [created["templateId"]]
    page = ok(admin.get(f"/{sid}/templates", params={"page": 0, "size": 1}))
    assert page["size"] == 1 and len(page["items"]) == 1 and page["totalCount"] >= 1


def test_template_put_replaces_and_delete(admin, ca):
    sid, parent = ca["sid"], ca["int"]["certId"]
    created = admin.create_template(sid, template_body(parent, allowIpSans=True,
                                                       storeInServer=False,
                                                       backDateValidation=600,
                                                       urlSansWhitelist=["https://*"]))
    tid = created["templateId"]
    replaced = ok(admin.put(f"/{sid}/templates/{tid}", {
        "name": created["name"], "parentCertId": parent, "maxTTL": 7200,
        "keyInfo": {"algorithm": "EC", "keySize": 384}}))
    for field, value in TEMPLATE_DEFAULTS.items():
        assert replaced[field] == value, f"{field} must return to its default on PUT"
    assert replaced["urlSansWhitelist"] in (None, [])
    assert replaced["keyInfo"]["keySize"] == 384 and replaced["maxTTL"] == 7200
    assert ok(admin.get(f"/{sid}/templates/{tid}")) == replaced

    ok(admin.with_(edition="cas").delete(f"/{sid}/templates/{tid}"))
    fails(admin.get(f"/{sid}/templates/{tid}"), 404, 40400)
    fails(admin.delete(f"/{sid}/templates/{tid}"), 404, 40400)
    fails(admin.post(f"/{sid}/templates/{tid}/certificates", generate()), 404, 40400)


def test_template_duplicate_name_is_409_per_store(admin, ca):
    sid, parent = ca["sid"], ca["int"]["certId"]
    name = unique("dup-tpl")
    admin.create_template(sid, template_body(parent, name=name))
    before = admin.template_count(sid)
    fails(admin.post(f"/{sid}/templates", template_body(parent, name=name)), 409, 40900, "name")
    assert admin.template_count(sid) == before
    other = admin.create_store(unique("other-tpl-store"))
    other_root = admin.create_issuer(other["caStoreId"], issuer_body(max_depth=0))
    admin.create_template(other["caStoreId"], template_body(other_root["certId"], name=name))


def test_template_of_another_store_is_404(admin, ca, templates):
    other = admin.create_store(unique("tpl-404"))
    tid = templates["EC-256"]["templateId"]
    fails(admin.get(f"/{other['caStoreId']}/templates/{tid}"), 404, 40400)
    fails(admin.post(f"/{other['caStoreId']}/templates/{tid}/certificates", generate()), 404,
          40400)


def setting(value, *path):
    def mutate(body):
        target = body
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return mutate


def both_limits(body):
    body["maxSpecificDate"] = "2030-01-01T00:00:00"


def key_and_usage(alg, size, usage):
    def mutate(body):
        body["keyInfo"] = {"algorithm": alg, "keySize": size}
        body["keyUsage"] = usage
    return mutate


TEMPLATE_CONSTRAINTS = [
    ("name-missing", setting(KeyError, "name"), (40000, 40001), "name"),
    ("name-65", setting("n" * 65, "name"), 40001, "name"),
    ("description-257", setting("d" * 257, "description"), 40001, "description"),
    ("parentCertId-missing", setting(KeyError, "parentCertId"), (40000, 40001), "parentCertId"),
    ("maxTTL-and-maxSpecificDate", both_limits, 40001, ("maxTTL", "maxSpecificDate")),
    ("neither-maxTTL-nor-date", setting(KeyError, "maxTTL"), 40001, ("maxTTL", "maxSpecificDate")),
    ("maxTTL-315360001", setting(315360001, "maxTTL"), 40001, "maxTTL"),
    ("maxTTL-negative", setting(-1, "maxTTL"), (40000, 40001), "maxTTL"),
    ("backDateValidation-2592001", setting(2592001, "backDateValidation"), 40001,
     "backDateValidation"),
    ("keyInfo-missing", setting(KeyError, "keyInfo"), (40000, 40001), "keyInfo"),
    ("keyInfo-RSA-1024", setting({"algorithm": "RSA", "keySize": 1024}, "keyInfo"), 40001,
     ("keyInfo", "keySize")),
    ("keyInfo-EC-255", setting({"algorithm": "EC", "keySize": 255}, "keyInfo"), 40001,
     ("keyInfo", "keySize")),
    ("signatureBits-128", setting(128, "signatureBits"), 40001, "signatureBits"),
    ("keyUsage-unknown", setting(["FOO"], "keyUsage"), 40000, "keyUsage"),
    ("extendedKeyUsage-unknown", setting(["BAR"], "extendedKeyUsage"), 40000, "extendedKeyUsage"),
    ("extendedKeyUsageOids-bad", setting(["1.2.x"], "extendedKeyUsageOids"), 40001,
     "extendedKeyUsageOids"),
    ("policies-bad", setting(["not-an-oid"], "policies"), 40001, "policies"),
    ("otherSansWhitelist-oid", setting([{"oid": "x", "type": "UTF8String", "value": "*"}],
                                       "otherSansWhitelist"), 40001, "oid"),
    ("otherFields-type", setting([{"oid": "2.5.4.45", "type": "Utf9", "value": "v"}],
                                 "otherFields"), (40000, 40001), "type"),
    ("country-KOR", setting("KOR", "subjectInfo", "country"), 40001, "country"),
    ("organization-65", setting("o" * 65, "subjectInfo", "organization"), 40001, "organization"),
    ("keyEncipherment-on-EC", key_and_usage("EC", 256, ["DIGITAL_SIGNATURE", "KEY_ENCIPHERMENT"]),
     40001, "keyUsage"),
    ("dataEncipherment-on-EC", key_and_usage("EC", 256, ["DATA_ENCIPHERMENT"]), 40001,
     "keyUsage"),
    ("keyAgreement-on-RSA", key_and_usage("RSA", 2048, ["KEY_AGREEMENT"]), 40001, "keyUsage"),
    ("keyEncipherment-on-ED25519", key_and_usage("ED25519", 256, ["KEY_ENCIPHERMENT"]), 40001,
     "keyUsage"),
    ("keyAgreement-on-ED25519", key_and_usage("ED25519", 256, ["KEY_AGREEMENT"]), 40001,
     "keyUsage"),
    ("unknown-field", setting(True, "allowIpSan"), (40000, 40001), "allowIpSan"),
]


@pytest.mark.parametrize("mutate,codes,field", [c[1:] for c in TEMPLATE_CONSTRAINTS],
                         ids=[c[0] for c in TEMPLATE_CONSTRAINTS])
def test_template_constraints(admin, ca, mutate, codes, field):
    body = template_body(ca["int"]["certId"])
    mutate(body)
    before = admin.template_count(ca["sid"])
    fails(admin.post(f"/{ca['sid']}/templates", body), 400, codes, field)
    assert admin.template_count(ca["sid"]) == before


def test_template_with_unknown_parent(admin, ca):
    before = admin.template_count(ca["sid"])
    reply = admin.post(f"/{ca['sid']}/templates", template_body(999999999))
    assert reply.status in (400, 404), reply
    fails(reply, reply.status, 40400 if reply.status == 404 else 40001, "parentCertId")
    assert admin.template_count(ca["sid"]) == before


def test_key_usages_that_fit_are_accepted(admin, ca):
    parent = ca["int"]["certId"]
    admin.create_template(ca["sid"], template_body(parent, "RSA", 2048, keyUsage=[
        "DIGITAL_SIGNATURE", "KEY_ENCIPHERMENT", "DATA_ENCIPHERMENT", "NON_REPUDIATION"]))
    admin.create_template(ca["sid"], template_body(parent, "EC", 256, keyUsage=[
        "DIGITAL_SIGNATURE", "KEY_AGREEMENT", "NON_REPUDIATION"]))
    admin.create_template(ca["sid"], template_body(parent, "ED25519", 256, keyUsage=[
        "DIGITAL_SIGNATURE", "NON_REPUDIATION"]))


# ---------------------------------------------------------------------------------------------
# GENERATE: every key type x format x privateKeyFormat


@pytest.mark.parametrize("pkf", KEY_FORMATS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kid", LEAF_KIDS)
def test_generate_every_key_and_format(admin, ca, templates, kid, fmt, pkf):
    alg = kid.split("-")[0]
    resp = admin.issue(ca["sid"], templates[kid]["templateId"],
                       generate("gen.example.com", sans=["www.example.com"], format=fmt,
                                privateKeyFormat=pkf))
    cert, chain, _ = decode_leaf(resp, fmt, "GENERATE", pkf, alg)
    assert [c.subject for c in chain] == [load_pem(ca["int"]["certificatePem"]).subject,
                                         load_pem(ca["root"]["certificatePem"]).subject]
    verify_leaf(cert, chain)

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gen.example.com"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "pcad tests"
    assert {"gen.example.com", "www.example.com"} <= set(san_values(cert, x509.DNSName))
    assert aki(cert) == ski(chain[0])
    assert cert.signature_algorithm_oid.dotted_string == SIGNATURE_OIDS["SHA256_WITH_ECDSA"]
    assert extension(cert, ExtensionOID.BASIC_CONSTRAINTS) is None  # validForNonCa false
    ku = extension(cert, ExtensionOID.KEY_USAGE).value
    assert ku.digital_signature and not ku.key_cert_sign and not ku.crl_sign
    assert ku.key_encipherment == (alg == "RSA")
    eku = extension(cert, ExtensionOID.EXTENDED_KEY_USAGE).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert extension(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS) is None  # crlActive false
    assert extension(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS) is None  # ocspActive false
    span = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
    assert 86400 - 5 <= span <= 86400 + 30 + 5

    detail = admin.cert(ca["sid"], resp["certId"])
    assert detail["certificateType"] == "LEAF" and detail["status"] == "VALID"
    assert detail["templateId"] == templates[kid]["templateId"]
    assert detail["parentCertId"] == ca["int"]["certId"]
    assert detail["serialNumber"] == resp["serialNumber"]
    assert load_pem(detail["certificatePem"]) == cert


def test_invalid_format_falls_back_to_pem(admin, ca, templates):
    resp = admin.issue(ca["sid"], templates["EC-256"]["templateId"],
                       generate(format="XML", privateKeyFormat="JKS"))
    cert, chain, _ = decode_leaf(resp, "PEM", "GENERATE", "PEM", "EC")
    verify_leaf(cert, chain)


# ---------------------------------------------------------------------------------------------
# SIGN


@pytest.mark.parametrize("tool", ["openssl", "cryptography"])
@pytest.mark.parametrize("kid", ["RSA-2048", "EC-256", "EC-384", "ED25519"])
def test_sign_csr(admin, ca, templates, kid, tool):
    alg, size = (kid.split("-")[0], int(kid.split("-")[1])) if "-" in kid else (kid, 256)
    csr, key = make_csr(alg, size, cn="csr.example.com", tool=tool)
    for fmt in FORMATS:
        resp = admin.issue(ca["sid"], templates[kid]["templateId"],
                           sign(csr, commonName="signed.example.com", format=fmt))
        cert, chain, _ = decode_leaf(resp, fmt, "SIGN")
        assert public_der(cert) == public_der(key)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
            "signed.example.com"
        assert len(chain) == 2
        verify_leaf(cert, chain)


def test_remove_roots_from_chain(admin, ca, templates):
    csr, _ = make_csr()
    tid = templates["EC-256"]["templateId"]
    kept = admin.issue(ca["sid"], tid, sign(csr, commonName="a.example.com",
                                            removeRootsFromChain=False))
    assert len(kept["caChain"]) == 2
    removed = admin.issue(ca["sid"], tid, sign(csr, commonName="a.example.com",
                                               removeRootsFromChain=True))
    assert [load_pem(c) for c in removed["caChain"]] == [load_pem(ca["int"]["certificatePem"])]


def test_tampered_or_garbage_csr_is_40002(admin, ca, templates):
    tid = templates["EC-256"]["templateId"]
    csr, _ = make_csr()
    der = bytearray(x509.load_pem_x509_csr(csr.encode()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    tampered = "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode() \
        + "-----END CERTIFICATE REQUEST-----\n"
    before = admin.cert_count(ca["sid"], "leaf")
    fails(admin.post(issue_path(ca, {"templateId": tid}), sign(tampered, commonName="t.example.com")),
          400, 40002)
    fails(admin.post(issue_path(ca, {"templateId": tid}), sign("not a csr", commonName="x.io")),
          400, 40002)
    # A CSR whose key the template forbids (RSA on an EC-256 template).
    rsa_csr, _ = make_csr("RSA", 2048)
    fails(admin.post(issue_path(ca, {"templateId": tid}), sign(rsa_csr, commonName="x.io")),
          400, 40002)
    assert admin.cert_count(ca["sid"], "leaf") == before


def test_issue_request_constraints(admin, ca, templates):
    path = issue_path(ca, templates["EC-256"])
    before = admin.cert_count(ca["sid"], "leaf")
    fails(admin.post(path, {"commonName": "x.example.com", "ttlValue": 60}), 400,
          (40000, 40001), "mode")
    fails(admin.post(path, generate(mode="FORGE")), 400, 40000, "mode")
    body = generate()
    del body["commonName"]
    fails(admin.post(path, body), 400, (40000, 40001), "commonName")
    fails(admin.post(path, generate(cn="c" * 65)), 400, 40001, "commonName")
    fails(admin.post(path, {"mode": "SIGN", "commonName": "x.io", "ttlValue": 60}), 400,
          (40000, 40001), "csr")
    fails(admin.post(path, generate(specificDate="2030-01-01T00:00:00")), 400, 40001,
          ("ttlValue", "specificDate"))
    fails(admin.post(path, generate(ttl=315360001)), 400, 40001, "ttlValue")
    fails(admin.post(path, generate(serialNumber="s" * 65)), 400, 40001, "serialNumber")
    fails(admin.post(path, generate(ipSans=["300.1.1.1"])), 400, 40001, "ipSans")
    fails(admin.post(path, generate(otherSans=[{"oid": "1.x", "type": "UTF8String",
                                                "value": "v"}])), 400, 40001, "oid")
    fails(admin.post(path, generate(colour="red")), 400, (40000, 40001), "colour")
    assert admin.cert_count(ca["sid"], "leaf") == before


# ---------------------------------------------------------------------------------------------
# Template rules, both ways


def test_allow_ip_sans(admin, ca):
    parent = ca["int"]["certId"]
    deny = admin.create_template(ca["sid"], template_body(parent))
    allow = admin.create_template(ca["sid"], template_body(parent, allowIpSans=True))
    fails(admin.post(issue_path(ca, deny), generate(ipSans=["10.0.0.1"])), 400, 40001, "ipSans")
    resp = admin.issue(ca["sid"], allow["templateId"], generate(ipSans=["10.0.0.1", "::1"]))
    cert = load_pem(resp["certificate"])
    assert {str(i) for i in san_values(cert, x509.IPAddress)} == {"10.0.0.1", "::1"}
    # An IP in the CSR, copied by useCsrSans, is forbidden by a template without allowIpSans.
    csr_deny = admin.create_template(ca["sid"], template_body(parent, useCsrSans=True))
    csr, _ = make_csr(ips=["10.9.9.9"], dns=["csr.example.com"])
    fails(admin.post(issue_path(ca, csr_deny), sign(csr, commonName="csr.example.com")), 400,
          40002, "ipSans")


def test_url_sans_whitelist(admin, ca):
    parent = ca["int"]["certId"]
    tpl = admin.create_template(ca["sid"], template_body(
        parent, urlSansWhitelist=["https://*.example.com/*", "spiffe://pcad/*"]))
    resp = admin.issue(ca["sid"], tpl["templateId"], generate(
        urlSans=["https://app.example.com/x", "spiffe://pcad/workload"]))
    assert set(san_values(load_pem(resp["certificate"]), x509.UniformResourceIdentifier)) == \
        {"https://app.example.com/x", "spiffe://pcad/workload"}
    fails(admin.post(issue_path(ca, tpl), generate(urlSans=["https://evil.test/x"])), 400, 40001,
          "urlSans")
    none = admin.create_template(ca["sid"], template_body(parent))
    fails(admin.post(issue_path(ca, none), generate(urlSans=["https://app.example.com/x"])), 400,
          40001, "urlSans")


def test_other_sans_whitelist(admin, ca):
    parent = ca["int"]["certId"]
    upn = "1.3.6.1.4.1.311.20.2.3"
    tpl = admin.create_template(ca["sid"], template_body(
        parent, otherSansWhitelist=[{"oid": upn, "type": "UTF8String", "value": "*"}]))
    resp = admin.issue(ca["sid"], tpl["templateId"], generate(
        otherSans=[{"oid": upn, "type": "UTF8String", "value": "user@example.com"}]))
    others = san_values(load_pem(resp["certificate"]), x509.OtherName)
    assert [o.type_id.dotted_string for o in others] == [upn]
    assert b"user@example.com" in others[0].value
    fails(admin.post(issue_path(ca, tpl), generate(
        otherSans=[{"oid": "1.2.3.4", "type": "UTF8String", "value": "x"}])), 400, 40001,
        "otherSans")


def test_use_csr_common_name(admin, ca):
    parent = ca["int"]["certId"]
    csr, _ = make_csr(cn="from-csr.example.com")
    use = admin.create_template(ca["sid"], template_body(parent, useCsrCommonName=True))
    resp = admin.issue(ca["sid"], use["templateId"], sign(csr))
    cn = load_pem(resp["certificate"]).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn[0].value == "from-csr.example.com"

    ignore = admin.create_template(ca["sid"], template_body(parent))
    fails(admin.post(issue_path(ca, ignore), sign(csr)), 400, (40001, 40002), "commonName")
    resp = admin.issue(ca["sid"], ignore["templateId"], sign(csr, commonName="req.example.com"))
    cn = load_pem(resp["certificate"]).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn[0].value == "req.example.com"


def test_use_csr_sans(admin, ca):
    parent = ca["int"]["certId"]
    csr, _ = make_csr(cn="x.example.com", dns=["from-csr.example.com"])
    use = admin.create_template(ca["sid"], template_body(parent, useCsrSans=True))
    cert = load_pem(admin.issue(ca["sid"], use["templateId"],
                                sign(csr, commonName="x.example.com"))["certificate"])
    assert "from-csr.example.com" in san_values(cert, x509.DNSName)
    ignore = admin.create_template(ca["sid"], template_body(parent))
    cert = load_pem(admin.issue(ca["sid"], ignore["templateId"],
                                sign(csr, commonName="x.example.com",
                                     sans=["from-request.example.com"]))["certificate"])
    assert "from-csr.example.com" not in san_values(cert, x509.DNSName)
    assert "from-request.example.com" in san_values(cert, x509.DNSName)


def test_max_ttl_and_max_specific_date(admin, ca):
    parent = ca["int"]["certId"]
    capped = admin.create_template(ca["sid"], template_body(parent, max_ttl=3600))
    fails(admin.post(issue_path(ca, capped), generate(ttl=7200)), 400, 40001,
          ("ttlValue", "maxTTL"))
    fails(admin.post(issue_path(ca, capped), {"mode": "GENERATE", "commonName": "a.example.com",
                                              "specificDate": future_date(30)[0]}),
          400, 40001, ("specificDate", "maxTTL"))
    cert = load_pem(admin.issue(ca["sid"], capped["templateId"], generate(ttl=1800))["certificate"])
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 1800 + 35

    body = template_body(parent)
    del body["maxTTL"]
    body["maxSpecificDate"], _ = future_date(400)
    dated = admin.create_template(ca["sid"], body)
    fails(admin.post(issue_path(ca, dated), {"mode": "GENERATE", "commonName": "a.example.com",
                                             "specificDate": future_date(500)[0]}),
          400, 40001, ("specificDate", "maxSpecificDate"))
    within, when = future_date(200)
    resp = admin.issue(ca["sid"], dated["templateId"], {
        "mode": "GENERATE", "commonName": "a.example.com", "specificDate": within})
    assert load_pem(resp["certificate"]).not_valid_after_utc == when


def test_leaf_never_outlives_its_issuer(admin, ca):
    short = admin.new_issuer(ca["sid"], issuer_body(kind="INTERMEDIATE",
                                                    parent=ca["root"]["certId"], max_depth=0,
                                                    ttl=2 * 86400))
    tpl = admin.create_template(ca["sid"], template_body(short["certId"], max_ttl=30 * 86400))
    message = fails(admin.post(issue_path(ca, tpl), generate(ttl=5 * 86400)), 400, 40001)
    assert short["notAfter"] in message, message


def test_store_in_server_false(admin, ca):
    tpl = admin.create_template(ca["sid"], template_body(ca["int"]["certId"], storeInServer=False))
    before = admin.cert_count(ca["sid"], "leaf")
    resp = admin.issue(ca["sid"], tpl["templateId"], generate())
    assert resp["certId"] is None
    assert HEX_SERIAL.match(resp["serialNumber"])
    assert admin.cert_count(ca["sid"], "leaf") == before
    verify_leaf(load_pem(resp["certificate"]), [load_pem(c) for c in resp["caChain"]])


def test_basic_constraints_policies_and_custom_eku(admin, ca):
    tpl = admin.create_template(ca["sid"], template_body(
        ca["int"]["certId"], basicConstraintsValidForNonCa=True,
        extendedKeyUsageOids=["1.3.6.1.4.1.99999.1"], policies=["2.23.140.1.2.1"]))
    cert = load_pem(admin.issue(ca["sid"], tpl["templateId"], generate())["certificate"])
    bc = extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc is not None and bc.value.ca is False
    eku = {o.dotted_string for o in extension(cert, ExtensionOID.EXTENDED_KEY_USAGE).value}
    assert "1.3.6.1.4.1.99999.1" in eku
    policies = extension(cert, ExtensionOID.CERTIFICATE_POLICIES).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.2.1"]


def test_crl_and_ocsp_urls_follow_the_store(admin, ca, pcad):
    store = admin.create_store(unique("urls"), crlActive=True, ocspActive=True)
    sid = store["caStoreId"]
    root = admin.new_issuer(sid, issuer_body(max_depth=0))
    tpl = admin.create_template(sid, template_body(root["certId"]))
    resp = admin.issue(sid, tpl["templateId"], generate())
    cert = load_pem(resp["certificate"])
    dps = extension(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    urls = [n.value for dp in dps for n in dp.full_name]
    assert urls and all(u.startswith(pcad.public_url + "/") for u in urls), urls
    aia = extension(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    ocsp = [d.access_location.value for d in aia
            if d.access_method == x509.AuthorityInformationAccessOID.OCSP]
    assert ocsp and ocsp[0].startswith(pcad.public_url + "/"), ocsp
    detail = admin.cert(sid, resp["certId"])
    assert detail["crlUrl"] in urls and detail["ocspUrl"] == ocsp[0]


# ---------------------------------------------------------------------------------------------
# Revoke


def test_revoke_leaf(admin, ca, templates):
    resp = admin.issue(ca["sid"], templates["EC-256"]["templateId"], generate())
    cid = resp["certId"]
    path = f"/{ca['sid']}/certs/{cid}/revoke"
    fails(admin.post(path, {"reason": "BORED"}), 400, 40000, "reason")
    assert admin.cert(ca["sid"], cid)["status"] == "VALID"
    revoked = ok(admin.post(path, {"reason": "KEY_COMPROMISE"}))
    assert revoked["certId"] == cid and revoked["status"] == "REVOKED"
    assert revoked["revocationReason"] == "KEY_COMPROMISE"
    parse_timestamp(revoked["revokedAt"])
    assert admin.cert(ca["sid"], cid)["status"] == "REVOKED"
    fails(admin.post(path, {"reason": "SUPERSEDED"}), 409, 40900)
    assert admin.cert(ca["sid"], cid)["revocationReason"] == "KEY_COMPROMISE"


@pytest.mark.parametrize("reason", REASONS)
def test_every_revocation_reason(admin, ca, templates, reason):
    cid = admin.issue(ca["sid"], templates["EC-256"]["templateId"], generate())["certId"]
    revoked = ok(admin.with_(edition="cas").post(f"/{ca['sid']}/certs/{cid}/revoke",
                                                 {"reason": reason}))
    assert revoked["revocationReason"] == reason


def test_revoke_without_body_is_unspecified(admin, ca, templates):
    cid = admin.issue(ca["sid"], templates["EC-256"]["templateId"], generate())["certId"]
    revoked = ok(admin.call("POST", f"/{ca['sid']}/certs/{cid}/revoke"))
    assert revoked["status"] == "REVOKED" and revoked["revocationReason"] == "UNSPECIFIED"


def test_revoke_root_is_409_and_unknown_is_404(admin, ca):
    fails(admin.post(f"/{ca['sid']}/certs/{ca['root']['certId']}/revoke", {}), 409, 40900)
    assert admin.cert(ca["sid"], ca["root"]["certId"])["status"] == "VALID"
    fails(admin.post(f"/{ca['sid']}/certs/999999999/revoke", {}), 404, 40400)


def test_revoked_issuer_cannot_issue(admin, ca):
    root = admin.new_issuer(ca["sid"], issuer_body(max_depth=2, cn="Revocation Test Root"))
    inter = admin.new_issuer(ca["sid"], issuer_body(kind="INTERMEDIATE", parent=root["certId"],
                                                    max_depth=1, ttl=30 * 86400))
    tpl = admin.create_template(ca["sid"], template_body(inter["certId"]))
    admin.issue(ca["sid"], tpl["templateId"], generate())
    ok(admin.post(f"/{ca['sid']}/certs/{inter['certId']}/revoke", {"reason": "CA_COMPROMISE"}))
    before = admin.cert_count(ca["sid"])
    fails(admin.post(issue_path(ca, tpl), generate()), 409, 40900)
    fails(admin.post(f"/{ca['sid']}/certs", issuer_body(kind="INTERMEDIATE",
                                                         parent=inter["certId"], max_depth=0,
                                                         ttl=86400)), 409, 40900)
    assert admin.cert_count(ca["sid"]) == before


# ---------------------------------------------------------------------------------------------
# Concurrency, lint, roles


def test_concurrent_issuance_gives_unique_serials(admin, ca, templates):
    tid = templates["EC-256"]["templateId"]
    before = admin.cert_count(ca["sid"], "leaf")

    def worker(n):
        return [admin.issue(ca["sid"], tid, generate(f"c{n}-{i}.example.com", ttl=3600))
                for i in range(25)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(worker, range(8)) for r in batch]
    assert len(results) == 200
    serials = {r["serialNumber"] for r in results}
    assert len(serials) == 200, "duplicate serials under concurrency"
    ids = {r["certId"] for r in results}
    assert len(ids) == 200 and None not in ids
    assert admin.cert_count(ca["sid"], "leaf") == before + 200
    listed = ok(admin.get(f"/{ca['sid']}/certs", params={"type": "leaf", "size": 1000}))
    assert serials <= {c["serialNumber"] for c in listed["items"]}


@pytest.mark.parametrize("kid", LEAF_KIDS)
def test_leaves_lint_clean(admin, ca, templates, kid):
    resp = admin.issue(ca["sid"], templates[kid]["templateId"],
                       generate("lint.example.com", sans=["www.lint.example.com"]))
    findings = pkilint_findings(resp["certificate"])
    assert findings == [], findings


def test_template_and_revoke_roles(pcad, admin, ca, templates):
    sid, tid = ca["sid"], templates["EC-256"]["templateId"]
    cid = admin.issue(sid, tid, generate())["certId"]
    body = template_body(ca["int"]["certId"])
    for edition in EDITIONS:
        viewer = admin.with_(identity="viewer", edition=edition)
        ok(viewer.get(f"/{sid}/templates"))
        ok(viewer.get(f"/{sid}/templates/{tid}"))
        fails(viewer.post(f"/{sid}/templates", body), 403, 40300)
        fails(viewer.put(f"/{sid}/templates/{tid}", body), 403, 40300)
        fails(viewer.delete(f"/{sid}/templates/{tid}"), 403, 40300)
        fails(viewer.post(f"/{sid}/templates/{tid}/certificates", generate()), 403, 40300)
        fails(viewer.post(f"/{sid}/certs/{cid}/revoke", {}), 403, 40300)
        anonymous = Api(pcad, None, admin.appkey, edition)
        fails(anonymous.get(f"/{sid}/templates"), 401, 40100)
        fails(anonymous.post(f"/{sid}/templates/{tid}/certificates", generate()), 401, 40100)
        fails(anonymous.post(f"/{sid}/certs/{cid}/revoke", {}), 401, 40100)
        norole = Api(pcad, "norole", admin.appkey, edition)
        fails(norole.get(f"/{sid}/templates/{tid}"), 403, 40300)
        elsewhere = admin.with_(appkey=admin.appkey + "-elsewhere", edition=edition)
        fails(elsewhere.get(f"/{sid}/templates/{tid}"), 404, 40400)
        fails(elsewhere.post(f"/{sid}/templates/{tid}/certificates", generate()), 404, 40400)
        fails(elsewhere.post(f"/{sid}/certs/{cid}/revoke", {}), 404, 40400)
    assert admin.cert(sid, cid)["status"] == "VALID"
    assert ok(admin.get(f"/{sid}/templates/{tid}")) == templates["EC-256"]
