"""Lifecycle of the daemon: SIGHUP reloads access roles and TLS material without dropping
connections (a bad config keeps the old one), SIGTERM drains in-flight requests and exits 0,
`pcad check-config` says what is wrong."""

import http.client
import json
import os
import signal
import ssl
import subprocess
import threading
import time

import pytest

import conftest
from pcadtest import issuer_body, run, unique
from reliability_helpers import private_pcad


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    with private_pcad(tmp_path_factory, "lifecycle") as pcad:
        yield pcad


def connection(pcad, identity):
    """A raw keep-alive HTTPS connection with a client certificate."""
    ctx = ssl.create_default_context(cafile=pcad.ca_pem)
    cert, key = pcad.client_cert(identity)
    ctx.load_cert_chain(cert, key)
    return http.client.HTTPSConnection("localhost", pcad.api_port, context=ctx, timeout=30)


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    return r.status, json.loads(body) if body else None


def sighup_and_settle(pcad):
    os.kill(pcad.daemon.pid, signal.SIGHUP)
    time.sleep(0.5)


def test_sighup_reloads_roles_without_dropping_connections(own):
    conftest.mint_cert(own.tls, "late-admin", "late-admin")
    path = "/v2.0/appkeys/reload/ca-stores"
    kept = connection(own, "admin")
    assert get(kept, path)[0] == 200
    assert get(connection(own, "late-admin"), path)[0] == 403

    text = own.config.read_text()
    own.config.write_text(text + '\n[[access]]\nidentity = "late-admin"\nappkey = "*"\nrole = "ADMIN"\n')
    sighup_and_settle(own)

    assert get(connection(own, "late-admin"), path)[0] == 200
    # The connection opened before the reload is still served.
    status, body = get(kept, path)
    assert status == 200 and body["header"]["isSuccessful"]
    assert own.daemon.running

    # A broken config is refused: the daemon keeps serving with the roles it had.
    own.config.write_text(own.config.read_text() + "\n[[access]\nbroken")
    sighup_and_settle(own)
    assert own.daemon.running
    assert get(connection(own, "late-admin"), path)[0] == 200
    assert "reload refused" in own.daemon.log_tail(200)
    own.config.write_text(text)
    sighup_and_settle(own)
    assert get(connection(own, "late-admin"), path)[0] == 403


def server_serial(pcad):
    out = run(["openssl", "s_client", "-connect", f"127.0.0.1:{pcad.api_port}", "-servername",
               "localhost", "-CAfile", pcad.ca_pem], input="", check=False).stdout
    cert = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=out,
                          capture_output=True, text=True)
    return cert.stdout.strip()


def test_sighup_reloads_tls_material(own):
    before = server_serial(own)
    assert before.startswith("serial=")
    tls = own.tls
    ext = tls / "server2.ext"
    ext.write_text("basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n"
                   "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n")
    run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", tls / "server2.key", "-subj", "/CN=localhost", "-out",
         tls / "server2.csr"])
    run(["openssl", "x509", "-req", "-in", tls / "server2.csr", "-CA", tls / "ca.pem", "-CAkey",
         tls / "ca.key", "-set_serial", "0x5eed5eed", "-days", "2", "-sha256", "-extfile", ext,
         "-out", tls / "server2.pem"])
    os.chmod(tls / "server2.key", 0o600)
    kept = connection(own, "admin")
    assert get(kept, "/v2.0/appkeys/reload/ca-stores")[0] == 200
    os.replace(tls / "server2.pem", tls / "server.pem")
    os.replace(tls / "server2.key", tls / "server.key")
    sighup_and_settle(own)
    assert server_serial(own) == "serial=5EED5EED"
    assert get(kept, "/v2.0/appkeys/reload/ca-stores")[0] == 200


def test_sigterm_drains_in_flight_requests_and_exits_zero(own):
    """An RSA-4096 root takes SoftHSM a while to generate: SIGTERM arrives while it is in
    flight; the request still gets its answer, and the daemon exits 0."""
    conn = connection(own, "admin")
    status, body = None, None
    conn.request("POST", "/v2.0/appkeys/drain/ca-stores", body=json.dumps({"name": unique("d")}))
    r = conn.getresponse()
    sid = json.loads(r.read())["body"]["caStoreId"]
    result = {}

    def issue():
        c = connection(own, "admin")
        c.request("POST", f"/v2.0/appkeys/drain/ca-stores/{sid}/certs",
                  body=json.dumps(issuer_body("RSA", 4096, name="drain-root")))
        resp = c.getresponse()
        result["status"] = resp.status
        result["body"] = json.loads(resp.read())

    t = threading.Thread(target=issue)
    t.start()
    time.sleep(0.3)
    assert own.daemon.running
    code = own.daemon.stop(timeout=60)
    t.join(60)
    assert result.get("status") == 200, result
    assert result["body"]["body"]["certificateType"] == "ROOT"
    assert code == 0
    log = own.daemon.log_tail(50)
    assert "draining" in log and "stopped" in log
    own.daemon.start()
    status, body = get(connection(own, "admin"), f"/v2.0/appkeys/drain/ca-stores/{sid}/certs")
    assert status == 200 and body["body"]["totalCount"] == 1


def test_check_config_names_what_is_wrong(own):
    ok = run([conftest.PCAD_BIN, "check-config", "--config", own.config], check=False)
    assert ok.returncode == 0, ok.stderr
    assert "fine" in ok.stdout
    bad = own.dir / "bad.toml"
    bad.write_text(own.config.read_text().replace("[public]", "[public]\nbase_ur = 1", 1))
    out = run([conftest.PCAD_BIN, "check-config", "--config", bad], check=False)
    assert out.returncode != 0 and "base_ur" in out.stderr
