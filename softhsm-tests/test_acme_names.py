"""ACME orders without a common name (ACME.md: "subject CN = the first DNS identifier that fits 64
characters (none if none does)"): a DNS name longer than 64 characters, and an IP-only order
(RFC 8738, http-01 on 127.0.0.1). The certificate carries the SANs alone; with an empty subject
the subjectAltName is critical (RFC 5280 §4.2.1.6). The v2.0 API still requires its commonName."""

import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

import pcadtest
from acme_helpers import Client, b64, env, http01  # noqa: F401 (fixtures)
from pcadtest import ok, unique

LONG = f"{'n' * 55}.apps.acme.test"  # 70 characters, under the base's *.apps.acme.test


def finalize(c, order, dns=(), ips=()):
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i))
                                               for i in ips]
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(names), critical=False)
           .sign(key, hashes.SHA256()))
    r = c.post(order["finalize"], {"csr": b64(csr.public_bytes(serialization.Encoding.DER))})
    assert r.status_code == 200 and r.json()["status"] == "valid", r.text
    pem = c.post(r.json()["certificate"], None)
    assert pem.status_code == 200, pem.text
    leaf_pem, *chain = pcadtest.split_pems(pem.text)
    return leaf_pem, chain


def check_leaf(env, leaf_pem, chain, dns, ips):
    cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) == []
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san.value.get_values_for_type(x509.DNSName) == list(dns)
    assert [str(i) for i in san.value.get_values_for_type(x509.IPAddress)] == list(ips)
    pcadtest.openssl_verify(leaf_pem, env.root["certificatePem"], chain)
    return cert, san


def test_a_name_longer_than_64_characters(env, http01):
    assert len(LONG) == 70
    c = Client(env)
    c.register(env.token())
    _, order = c.order([LONG])
    assert c.solve_http(order, http01) is None
    leaf_pem, chain = finalize(c, order, dns=[LONG])
    cert, san = check_leaf(env, leaf_pem, chain, [LONG], [])
    # The template's subject fields stay; the subject is not empty, so the SAN need not be
    # critical (and is not).
    assert cert.subject.rfc4514_string() == "O=pcad tests,C=KR"
    assert san.critical is False
    assert pcadtest.pkilint_findings(leaf_pem) == []
    # With a name that fits, the first one that fits is the CN, as before.
    _, order = c.order([LONG, "api.acme.test"])
    assert c.solve_http(order, http01) is None
    leaf_pem, chain = finalize(c, order, dns=[LONG, "api.acme.test"])
    cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [
        "api.acme.test"]


def test_an_ip_only_order_gets_an_empty_subject(env, http01):
    # A template without subject fields that allows IP SANs, and a base certificate of it
    # holding 127.0.0.1 (issued over v2.0, which still needs its commonName).
    tpl = env.admin.create_template(env.sid, {
        "name": unique("acme-ip"), "parentCertId": env.inter["certId"],
        "maxTTL": 90 * 86400, "keyInfo": {"algorithm": "EC", "keySize": 256},
        "keyUsage": ["DIGITAL_SIGNATURE"], "extendedKeyUsage": ["SERVER_AUTHENTICATION"],
        "allowIpSans": True, "storeInServer": True})
    r = env.admin.post(f"/{env.sid}/templates/{tpl['templateId']}/certificates", {
        "mode": "GENERATE", "ipSans": ["127.0.0.1"], "ttlValue": 86400})
    assert r.status == 400 and "commonName" in r.text, (r.status, r.text)
    base = env.admin.issue(env.sid, tpl["templateId"], {
        "mode": "GENERATE", "commonName": "ip-base.acme.test", "ipSans": ["127.0.0.1"],
        "ttlValue": 30 * 86400})
    c = Client(env, cert_id=base["certId"])
    c.register(env.token(cert_id=base["certId"]))
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]})
    assert r.status_code == 201, r.text
    order = r.json()
    assert c.solve_http(order, http01) is None
    leaf_pem, chain = finalize(c, order, ips=["127.0.0.1"])
    cert, san = check_leaf(env, leaf_pem, chain, [], ["127.0.0.1"])
    assert len(cert.subject) == 0
    assert san.critical is True
    assert pcadtest.pkilint_findings(leaf_pem) == []
    # Recorded in the v2.0 API under its serial (no common name to name it by).
    leaves = ok(env.admin.get(f"/{env.sid}/certs", params={"type": "leaf", "size": 100}))
    mine = [x for x in leaves["items"] if int(x["serialNumber"], 16) == cert.serial_number]
    assert len(mine) == 1, leaves
    assert env.admin.cert(env.sid, mine[0]["certId"])["templateId"] == tpl["templateId"]
