"""TLS posture of the API listener (API.md "Listeners": TLS 1.2/1.3, client certificate
requested), tried with an independent client (`openssl s_client`):

- TLS 1.0 and 1.1 are refused by the server (the client is told to offer them at SECLEVEL=0, so
  a refusal is the server's alert, not the client's own policy); TLS 1.2 and 1.3 work, the
  certificate verifies, and an authenticated request goes through on each;
- on TLS 1.2 only forward-secret AEAD suites are negotiated; legacy CBC/RSA-kx/3DES suites fail;
- a server key that group or others can read makes `pcad serve` (and `pcad check-config`) refuse
  to start, naming the key file and its mode; 0600 is accepted.

An untrusted client CA claiming an admin identity is covered by test_roles.py
(test_untrusted_client_certificate_is_refused).
"""

import re
import subprocess
import time

import pytest

import hsm_lab
from pcadtest import run

LEGACY_CIPHERS = ("AES128-SHA:AES256-SHA:AES128-SHA256:AES128-GCM-SHA256:DES-CBC3-SHA:"
                  "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:"
                  "ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0")


def s_client(pcad, *args, request=None, client=None):
    """`openssl s_client` against the API port; returns (exit code, stdout + stderr)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{pcad.api_port}", "-servername",
            "localhost", "-CAfile", pcad.ca_pem, "-verify_return_error", *args]
    if client:
        argv += ["-cert", client[0], "-key", client[1]]
    if request is not None:
        argv.append("-ign_eof")  # send the request, then read until the server closes
    proc = subprocess.run(argv, input=request or "", capture_output=True, text=True,
                          timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_below_1_2_is_refused(pcad, version):
    code, out = s_client(pcad, version, "-cipher", "DEFAULT@SECLEVEL=0")
    assert code != 0, out
    assert "no protocols available" not in out, f"the client never offered {version}:\n{out}"
    assert re.search(r"alert (handshake failure|protocol version)|SSL alert number (40|70)",
                     out), f"no refusal from the server:\n{out}"
    assert "Cipher is (NONE)" in out, out


@pytest.mark.parametrize("version,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_work(pcad, version, name):
    request = (f"GET /v2.0/appkeys/tls-posture/ca-stores?size=1 HTTP/1.1\r\n"
               f"Host: localhost:{pcad.api_port}\r\nConnection: close\r\n\r\n")
    code, out = s_client(pcad, version, request=request, client=pcad.client_cert("admin"))
    assert code == 0, out
    assert re.search(rf"Protocol\s*:\s*{re.escape(name)}", out) or \
        f"New, {name}," in out, out
    assert "Verify return code: 0 (ok)" in out, out
    assert "HTTP/1.1 200 OK" in out and '"isSuccessful":true' in out, out
    if name == "TLSv1.2":
        cipher = re.search(r"Cipher is (\S+)", out).group(1)
        assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher


def test_legacy_tls_1_2_suites_are_refused(pcad):
    code, out = s_client(pcad, "-tls1_2", "-cipher", LEGACY_CIPHERS)
    assert code != 0, out
    assert "Cipher is (NONE)" in out, out
    assert re.search(r"alert handshake failure|SSL alert number 40", out), out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A quickstart folder of our own (never started as a daemon here)."""
    return hsm_lab.Lab(tmp_path_factory.mktemp("tls-posture"), shim=False)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_server_key_readable_by_others_refuses_to_start(lab, mode):
    key = lab.tls / "server.key"
    key.chmod(mode)
    try:
        t0 = time.monotonic()
        serve = run([hsm_lab.PCAD_BIN, "serve", "--config", lab.config], check=False, timeout=30)
        seconds = time.monotonic() - t0
        check = run([hsm_lab.PCAD_BIN, "check-config", "--config", lab.config], check=False)
    finally:
        key.chmod(0o600)
    for proc in (serve, check):
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert str(key) in out or "server.key" in out, f"the key file is not named:\n{out}"
        assert f"{mode:o}" in out, f"the mode {mode:o} is not named:\n{out}"
    assert seconds < 10
    assert not hsm_lab.port_open(lab.api_port) and not hsm_lab.port_open(lab.public_port)
    # The same folder with the key back at 0600 is fine: the mode was the only problem.
    good = run([hsm_lab.PCAD_BIN, "check-config", "--config", lab.config], check=False)
    assert good.returncode == 0, good.stdout + good.stderr
