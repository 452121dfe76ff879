"""The NAVER Cloud edition while the HSM is unavailable (hsm_lab's fault-injection shim): 503
`FAIL_CORE` in NCP's envelope, nothing created or issued, and service again once it is back."""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hsm_lab import Lab
from ncp_client import Ncp, fails

V1 = "/api/v1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("ncp-hsm"))
    lab.start()
    yield lab
    lab.clear()
    lab.stop()


def csr_pem(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_hsm_down_answers_fail_core_and_writes_nothing(lab):
    d = lab.dir / "ncp"
    admin = Ncp(lab, (d / "admin.access-key").read_text().strip(),
                (d / "admin.secret-key").read_text().strip())
    root = admin.create_ca("hsm-root")
    t = root["caInfo"]["caTag"]
    before = (admin.ok(admin.get(f"{V1}/ca"))["totalCnt"],
              admin.ok(admin.get(f"{V1}/ca/{t}/cert"))["totalCnt"])
    lab.fault()
    try:
        body = {"alias": "hsm-two", "keyType": "EC256", "period": "30",
                "x509Parameters": {"commonName": "x"}}
        fails(admin.post(f"{V1}/ca?caType=PRIVATE_ROOT", body), 503, "FAIL_CORE", "HSM")
        fails(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("down.example.com")}), 503,
              "FAIL_CORE")
        fails(admin.post(f"{V1}/ca/{t}/cert", {"x509Parameters": {"commonName": "down"}}), 503,
              "FAIL_CORE")
    finally:
        lab.clear()
    assert lab.wait_health(True, 30) is not None
    after = (admin.ok(admin.get(f"{V1}/ca"))["totalCnt"],
             admin.ok(admin.get(f"{V1}/ca/{t}/cert"))["totalCnt"])
    assert after == before
    admin.ok(admin.post(f"{V1}/ca/{t}/cert/sign", {"csrPem": csr_pem("up.example.com")}))
