"""NCP CA lifecycle on a daemon of its own with `[ncp] destroy_delay = "4s"`: memo and status
changes, DEACTIVATED (no issuing; CRL and OCSP still served), DESTROYING with its deadline,
cancelling it, destruction with the sub CAs and their HSM keys carried out by the scheduler even
when pcad restarts during the delay, and Delete CA."""

import os
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import pcadtest
from ncp_client import fails, start_env

V1 = "/api/v1"
DELAY = 4


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = start_env(tmp_path_factory.mktemp("ncp-life"), destroy_delay=f"{DELAY}s")
    yield e
    e.daemon.stop()


@pytest.fixture(scope="module")
def admin(env):
    return env.key("admin")


def csr_pem(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def key_ids(env):
    return {o.get("ID", "") for o in pcadtest.token_objects(env)}


def tag(ca):
    return ca["caInfo"]["caTag"]


def test_memo_and_deactivation(env, admin):
    ca = admin.create_ca("life-a")
    t = tag(ca)
    d = admin.ok(admin.put(f"{V1}/ca/{t}", {"memo": "new memo"}))
    assert d["memo"] == "new memo" and d["caInfo"]["memo"] == "new memo"
    leaf = admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("a.example.com")}))
    d = admin.ok(admin.put(f"{V1}/ca/{t}", {"status": "DEACTIVATED"}))
    assert d["status"] == "DEACTIVATED" and d["statusUpdateDate"] >= ca["caInfo"]["statusUpdateDate"]
    fails(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("b.example.com")}), 400,
          "INVALID_CA_STATUS", "Invalid ca status")
    fails(admin.post(f"{V1}/ca/{t}/cert", {"x509Parameters": {"commonName": "b"}}), 400,
          "INVALID_CA_STATUS")
    # Revocation and its publishing still work on a DEACTIVATED CA.
    assert admin.ok(admin.post(f"{V1}/ca/{t}/cert/{leaf['serialNo']}/revoke")) is None
    crl = x509.load_der_x509_crl(requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10).content)
    serial = int(leaf["serialNo"].replace(":", ""), 16)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    admin.ok(admin.put(f"{V1}/ca/{t}", {"status": "ACTIVE"}))
    admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("c.example.com")}))


def test_destroying_cancel_and_delete(env, admin):
    ca = admin.create_ca("life-b")
    t = tag(ca)
    fails(admin.delete(f"{V1}/ca/{t}"), 400, "INVALID_CA_STATUS")
    before = time.time() * 1000
    d = admin.ok(admin.put(f"{V1}/ca/{t}", {"status": "DESTROYING"}))
    assert d["status"] == "DESTROYING"
    assert before + DELAY * 1000 - 1000 <= d["destroyDate"] <= time.time() * 1000 + DELAY * 1000
    fails(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("x.example.com")}), 400,
          "INVALID_CA_STATUS")
    # Cancelled: it outlives the delay.
    d = admin.ok(admin.put(f"{V1}/ca/{t}", {"status": "ACTIVE"}))
    assert d["status"] == "ACTIVE" and d["destroyDate"] is None
    time.sleep(DELAY + 2)
    assert admin.ok(admin.get(f"{V1}/ca/{t}"))["caInfo"]["status"] == "ACTIVE"
    # Delete CA destroys at once once DESTROYING, key included.
    keys = key_ids(env)
    admin.ok(admin.put(f"{V1}/ca/{t}", {"status": "DESTROYING"}))
    assert admin.ok(admin.delete(f"{V1}/ca/{t}")) is None
    fails(admin.get(f"{V1}/ca/{t}"), 404, "NOT_FOUND")
    assert len(keys - key_ids(env)) == 1
    assert requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10).status_code == 404


def test_destroy_after_delay_across_restart_cascades(env, admin):
    root = admin.create_ca("life-root")
    sub = admin.create_ca("life-sub", key="RSA2048", period="365", ca_type="PRIVATE_SUB",
                          issuer=tag(root))
    keep = admin.create_ca("life-keep")
    leaf = admin.ok(admin.post(f"{V1}/ca/{tag(sub)}/cert/sign", {"csrPem": csr_pem("s.example.com")}))
    keys = key_ids(env)
    v2 = env.v2("admin", "demo")
    stores = pcadtest.ok(v2.get("", params={"page": 0, "size": 100}))["items"]
    sid = [s for s in stores if s["name"] == "ncp-api-v1"][0]["caStoreId"]
    certs_before = pcadtest.ok(v2.get(f"/{sid}/certs", params={"page": 0, "size": 1000}))["totalCount"]
    admin.ok(admin.put(f"{V1}/ca/{tag(root)}", {"status": "DESTROYING"}))
    # pcad restarts during the delay; the stored deadline is kept.
    env.daemon.stop()
    env.daemon.start()
    assert admin.ok(admin.get(f"{V1}/ca/{tag(root)}"))["caInfo"]["status"] == "DESTROYING"
    deadline = time.monotonic() + DELAY + 15
    while admin.get(f"{V1}/ca/{tag(root)}").status_code != 404:
        assert time.monotonic() < deadline, "not destroyed after the delay"
        time.sleep(0.5)
    fails(admin.get(f"{V1}/ca/{tag(sub)}"), 404, "NOT_FOUND")
    fails(admin.get(f"{V1}/ca/{tag(sub)}/cert/{leaf['serialNo']}"), 404, "NOT_FOUND")
    assert admin.ok(admin.get(f"{V1}/ca/{tag(keep)}"))["caInfo"]["status"] == "ACTIVE"
    gone = keys - key_ids(env)
    assert len(gone) == 2, gone  # the root's and the sub CA's keys
    certs_after = pcadtest.ok(v2.get(f"/{sid}/certs", params={"page": 0, "size": 1000}))["totalCount"]
    assert certs_after == certs_before - 3  # root, sub, leaf
    # The survivor still issues.
    admin.ok(admin.post(f"{V1}/ca/{tag(keep)}/cert/sign", {"csrPem": csr_pem("k.example.com")}))


# ---- a sub CA signed by an outside root ------------------------------------------------------

def openssl_root(tmp, name):
    key, pem = f"{tmp}/{name}.key", f"{tmp}/{name}.pem"
    pcadtest.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", key, "-subj", f"/CN=Outside {name}", "-days", "3650",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", pem])
    return key, pem


def openssl_sign(tmp, csr_text, ca_key, ca_pem, out, ca=True, days=1000):
    (Path(tmp) / "req.csr").write_text(csr_text)
    ext = Path(tmp) / "ext.cnf"
    ext.write_text(("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                    if ca else "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
                   + "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    pcadtest.run(["openssl", "x509", "-req", "-in", f"{tmp}/req.csr", "-CA", ca_pem, "-CAkey", ca_key,
                  "-set_serial", "0x" + os.urandom(8).hex(), "-days", str(days), "-sha256",
                  "-extfile", str(ext), "-out", f"{tmp}/{out}"])
    return (Path(tmp) / out).read_text()


def test_pending_sub_ca_signed_outside(env, admin, tmp_path):
    tmp = str(tmp_path)
    keys = key_ids(env)
    ca = admin.ok(admin.post(f"{V1}/ca?caType=PRIVATE_SUB", {
        "alias": "ext-sub", "keyType": "EC256", "period": "365",
        "x509Parameters": {"commonName": "Externally Signed Sub CA", "country": "KR"}}))
    t = tag(ca)
    assert ca["caInfo"]["status"] == "PENDING" and ca["caCertInfo"] is None
    assert len(key_ids(env) - keys) == 1
    fails(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("p.example.com")}), 400,
          "INVALID_CA_STATUS")
    csr_text = admin.ok(admin.get(f"{V1}/ca/{t}/sub/csr"))["csrPem"]
    (tmp_path / "sub.csr").write_text(csr_text)
    out = pcadtest.run(["openssl", "req", "-in", f"{tmp}/sub.csr", "-verify", "-noout"], check=False)
    assert "verif" in (out.stdout + out.stderr).lower() and out.returncode == 0, out
    req = x509.load_pem_x509_csr(csr_text.encode())
    assert req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Externally Signed Sub CA"

    root_key, root_pem = openssl_root(tmp, "root")
    other_key, other_pem = openssl_root(tmp, "other")
    good = openssl_sign(tmp, csr_text, root_key, root_pem, "good.pem")
    not_ca = openssl_sign(tmp, csr_text, root_key, root_pem, "notca.pem", ca=False)
    wrong_key_csr = csr_pem("someone else")
    wrong_key = openssl_sign(tmp, wrong_key_csr, root_key, root_pem, "wrongkey.pem")
    root_text = Path(root_pem).read_text()
    other_text = Path(other_pem).read_text()
    for cert_pem, chain, code in [
        (wrong_key, root_text, "INVALID_INPUT_CERT"),
        (not_ca, root_text, "INVALID_INPUT_CERT"),
        (good, other_text, "INVALID_INPUT_CA_CHAIN"),
        (good, "not pem", "INVALID_INPUT_CA_CHAIN"),
        ("garbage", root_text, "INVALID_INPUT_CERT"),
    ]:
        fails(admin.post(f"{V1}/ca/{t}/activate", {"certPem": cert_pem, "caChainPem": chain}),
              400, code)
        assert admin.ok(admin.get(f"{V1}/ca/{t}"))["caInfo"]["status"] == "PENDING"
    fails(admin.post(f"{V1}/ca/{t}/activate", {"caChainPem": root_text}), 400, "EMPTY_CERT",
          "cert is missing.")

    d = admin.ok(admin.post(f"{V1}/ca/{t}/activate", {"certPem": good, "caChainPem": root_text}))
    assert d["caInfo"]["status"] == "ACTIVE"
    assert d["caCertInfo"]["certPem"].strip() == good.strip()
    chain = pcadtest.split_pems(admin.ok(admin.get(f"{V1}/ca/{t}/chain")))
    assert [c.strip() for c in chain] == [good.strip(), root_text.strip()]
    fails(admin.get(f"{V1}/ca/{t}/sub/csr"), 400, "INVALID_CA_STATUS")
    # It issues, with the HSM key that made the CSR; the leaves verify up to the outside root.
    leaf = admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("ext.example.com")}))
    assert [c.strip() for c in leaf["caChain"]] == [good.strip(), root_text.strip()]
    pcadtest.openssl_verify(leaf["certificate"], root_text, [good])
    assert pcadtest.pkilint_findings(leaf["certificate"]) == []
    crl = requests.get(f"{env.public_url}/ext/{t}/crl", timeout=10)
    assert x509.load_der_x509_crl(crl.content).issuer == x509.load_pem_x509_certificate(good.encode()).subject


def test_sign_sub_csr_for_an_outside_key(env, admin, tmp_path):
    root = admin.create_ca("life-signer")
    t = tag(root)
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Outside Sub CA")])).sign(key, hashes.SHA256())
    pem = req.public_bytes(serialization.Encoding.PEM).decode()
    fails(admin.post(f"{V1}/ca/{t}/sub/sign", {"csrPem": pem, "period": "4000"}), 400,
          "INVALID_INPUT_PERIOD")
    fails(admin.post(f"{V1}/ca/{t}/sub/sign", {"period": "30"}), 400, "EMPTY_CSR")
    d = admin.ok(admin.post(f"{V1}/ca/{t}/sub/sign", {"csrPem": pem, "period": "30"}))
    cert = x509.load_pem_x509_certificate(d["certificate"].encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert [c.strip() for c in d["caChain"]] == [root["caCertInfo"]["certPem"].strip()]
    pcadtest.openssl_verify(d["certificate"], root["caCertInfo"]["certPem"])
    assert pcadtest.pkilint_findings(d["certificate"]) == []


def test_deleting_the_v2_store_removes_its_ncp_cas(env, admin):
    """Runs last: deleting the `ncp-api-v1` store through /v2.0 deletes the NCP CAs in it."""
    ca = admin.create_ca("life-last")
    v2 = env.v2("admin", "demo")
    stores = pcadtest.ok(v2.get("", params={"page": 0, "size": 100}))["items"]
    sid = [s for s in stores if s["name"] == "ncp-api-v1"][0]["caStoreId"]
    pcadtest.ok(v2.delete(f"/{sid}"))
    fails(admin.get(f"{V1}/ca/{tag(ca)}"), 404, "NOT_FOUND")
    assert admin.ok(admin.get(f"{V1}/ca"))["totalCnt"] == 0
    # The next Create CA makes the store again; the alias is free again.
    again = admin.create_ca("life-last")
    assert admin.ok(admin.get(f"{V1}/ca/{tag(again)}"))["caInfo"]["status"] == "ACTIVE"
