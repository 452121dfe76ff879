"""pkilint (Digicert's RFC 5280 linter, `lint_pkix_cert`) on every issuer certificate: no
ERROR or FATAL finding."""

import pytest

from pcadtest import KEY_CASES, key_id, pkilint_findings

ROOTS = [key_id(a, s) for a, s, _ in KEY_CASES]
INTERMEDIATES = ["ec256-under-rsa2048", "rsa2048-under-ec384", "ed25519-under-rsa2048-int",
                 "ed25519-under-ed25519", "ec521-under-ec256"]


def test_linter_finds_errors():
    """The wrapper really reports findings: a CA certificate with non-critical basicConstraints
    and no keyCertSign is an ERROR for pkilint."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", f"{tmp}/k.pem", "-subj", "/CN=Bad CA", "-days", "30",
             "-addext", "basicConstraints=CA:TRUE", "-addext", "keyUsage=digitalSignature",
             "-out", f"{tmp}/c.pem"],
            check=True, capture_output=True)
        findings = pkilint_findings(open(f"{tmp}/c.pem").read())
    codes = {f["code"] for f in findings}
    assert "pkix.basic_constraints_extension_not_critical" in codes, findings


@pytest.mark.parametrize("kid", ROOTS)
def test_root_lints_clean(issuer_set, kid):
    findings = pkilint_findings(issuer_set["roots"][kid]["certificatePem"])
    assert findings == [], findings


@pytest.mark.parametrize("name", INTERMEDIATES)
def test_intermediate_lints_clean(issuer_set, name):
    findings = pkilint_findings(issuer_set["intermediates"][name][0]["certificatePem"])
    assert findings == [], findings
