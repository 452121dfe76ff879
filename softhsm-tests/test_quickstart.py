"""`pcad quickstart` (API.md "Quickstart layout"): the files, their modes, the config keys tools
rely on, the printed curl example working as printed, and a refusal to overwrite."""

import json
import shlex
import stat
import subprocess

from conftest import PCAD_BIN
from pcadtest import run


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_modes(pcad):
    d = pcad.dir
    for name in ["pcad.toml", "softhsm2.conf", "hsm-pin", "tls/ca.pem", "tls/admin.pem",
                 "tls/admin.key", "tls/viewer.pem", "tls/viewer.key", "tls/server.pem",
                 "tls/server.key"]:
        assert (d / name).is_file(), name
    assert (d / "tokens").is_dir() and any((d / "tokens").iterdir()), "token directory is empty"
    for private in ["hsm-pin", "tls/admin.key", "tls/viewer.key", "tls/server.key"]:
        assert mode(d / private) == 0o600, private
    assert mode(d / "pcad.toml") & 0o002 == 0
    assert f"directories.tokendir = {d}/tokens" in (d / "softhsm2.conf").read_text()
    pin = pcad.pin()
    assert len(pin) == 16 and pin.isalnum()


def test_config_keys_tools_rely_on(pcad):
    text = pcad.config.read_text()
    assert 'module = "/usr/lib/softhsm/libsofthsm2.so"' in text
    assert 'token_label = "pcad"' in text
    assert 'pin_file = "hsm-pin"' in text
    assert f'listen = "127.0.0.1:{pcad.api_port}"' in text
    assert f'listen = "127.0.0.1:{pcad.public_port}"' in text
    assert f'base_url = "http://127.0.0.1:{pcad.public_port}"' in text
    assert f'SOFTHSM2_CONF = "{pcad.softhsm_conf}"' in text


def test_tls_material_chains_to_the_ca(pcad):
    out = run(["openssl", "verify", "-CAfile", pcad.ca_pem, pcad.tls / "server.pem",
               pcad.tls / "admin.pem", pcad.tls / "viewer.pem"]).stdout
    assert out.count(": OK") == 3, out
    run(["openssl", "verify", "-CAfile", pcad.ca_pem, "-purpose", "sslserver",
         "-verify_hostname", "localhost", pcad.tls / "server.pem"])
    run(["openssl", "verify", "-CAfile", pcad.ca_pem, "-purpose", "sslserver",
         "-verify_ip", "127.0.0.1", pcad.tls / "server.pem"])
    for who, cn in [("admin", "pcad-admin"), ("viewer", "pcad-viewer")]:
        run(["openssl", "verify", "-CAfile", pcad.ca_pem, "-purpose", "sslclient",
             pcad.tls / f"{who}.pem"])
        subject = run(["openssl", "x509", "-noout", "-subject", "-in",
                       pcad.tls / f"{who}.pem"]).stdout
        assert f"CN = {cn}" in subject or f"CN={cn}" in subject, subject


def test_printed_text_names_ports_and_commands(pcad):
    out = pcad.quickstart_output
    assert str(pcad.api_port) in out and str(pcad.public_port) in out
    assert f"pcad serve --config {pcad.dir}/pcad.toml" in out


def test_printed_curl_example_works(pcad):
    lines = [line.strip() for line in pcad.quickstart_output.splitlines()
             if line.strip().startswith("curl ")]
    assert len(lines) == 1, pcad.quickstart_output
    args = shlex.split(lines[0])
    assert f"https://localhost:{pcad.api_port}/v2.0/appkeys/demo/ca-stores" in args
    proc = run(args + ["--silent", "--show-error", "--fail-with-body"], timeout=30)
    reply = json.loads(proc.stdout)
    assert reply["header"] == {"resultCode": 0, "resultMessage": "SUCCESS", "isSuccessful": True}
    assert {"totalCount", "page", "size", "items"} <= set(reply["body"])


def test_quickstart_refuses_to_overwrite(pcad):
    before = pcad.config.read_text()
    proc = subprocess.run([str(PCAD_BIN), "quickstart", "--dir", str(pcad.dir)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "already exists" in proc.stdout + proc.stderr
    assert pcad.config.read_text() == before


def test_quickstart_creates_a_missing_directory(tmp_path):
    target = tmp_path / "a" / "b"
    proc = subprocess.run([str(PCAD_BIN), "quickstart", "--dir", str(target), "--api-port",
                           "18443", "--public-port", "18080"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (target / "pcad.toml").is_file() and mode(target / "hsm-pin") == 0o600
    assert 'listen = "127.0.0.1:18443"' in (target / "pcad.toml").read_text()
