"""The README's "Trying it" section runs as written (issue #12, item 2): its shell blocks are
extracted and run, in order, in one bash session with `set -euo pipefail`, against a quickstart
daemon laid out as `scripts/demo.sh` lays it out (`./demo` beside the commands). The only
changes: the API port (8443) becomes the test's free port and `target/release/pcad` becomes
PCAD_BIN. After each block the shell reports its variables, and each block's effect is checked
with openssl, cryptography and the API itself."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import conftest
from conftest import PCAD_BIN, REPO
from pcadtest import Api, load_pem, ok

README = REPO / "README.md"


def trying_it_blocks():
    text = README.read_text()
    section = re.search(r"(?ms)^## Trying it\n(.*?)(?=^## )", text)
    assert section, "README has no '## Trying it' section"
    blocks = re.findall(r"(?ms)^```sh\n(.*?)^```", section.group(1))
    assert len(blocks) >= 5, blocks
    return blocks


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`pcad quickstart --dir demo` inside a fresh working folder, then `pcad serve`."""
    from reliability_helpers import prepare_config
    work = tmp_path_factory.mktemp("readme")
    directory = work / "demo"
    api_port, public_port, metrics_port = conftest.free_ports(3)
    proc = subprocess.run([str(PCAD_BIN), "quickstart", "--dir", str(directory), "--api-port",
                           str(api_port), "--public-port", str(public_port)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    prepare_config(directory / "pcad.toml", metrics_port)
    env = conftest.Pcad(directory, api_port, public_port, metrics_port, proc.stdout)
    conftest._DAEMONS.append(env.daemon)
    try:
        env.daemon.start()
        yield work, env
    finally:
        env.daemon.stop()
        conftest._DAEMONS.remove(env.daemon)


MARK = "@@readme-block"


def run_blocks(work, env, blocks):
    script = ["set -euo pipefail"]
    for i, block in enumerate(blocks):
        block = block.replace("localhost:8443", f"localhost:{env.api_port}")
        block = block.replace("target/release/pcad", str(PCAD_BIN))
        script.append(block)
        script.append(f'echo "{MARK} {i} S=${{S:-}} R=${{R:-}} T=${{T:-}} L=${{L:-}}"')
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "LC_ALL": "C"})
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    outputs, rest, ids = [], proc.stdout, {}
    for i in range(len(blocks)):
        before, line, rest = rest.partition(f"{MARK} {i} ")
        assert line, f"block {i} did not finish:\n{proc.stdout}\n{proc.stderr}"
        values, _, rest = rest.partition("\n")
        ids = dict(v.split("=", 1) for v in values.split())
        outputs.append((before, ids))
    return outputs, proc.stderr


def test_trying_it_runs_as_written(demo):
    work, env = demo
    blocks = trying_it_blocks()
    outputs, stderr = run_blocks(work, env, blocks)
    api = Api(env, "admin", "demo")

    # 1: store, root, template; ids from the answers, root.pem written.
    out, ids = outputs[0]
    sid, rid, tid = int(ids["S"]), int(ids["R"]), int(ids["T"])
    assert f"store {sid}, root {rid}, template {tid}" in out
    store = ok(api.get(f"/{sid}"))
    assert store["name"] == "prod" and store["crlActive"] and store["ocspActive"]
    root = load_pem((work / "root.pem").read_text())
    assert root.subject.rfc4514_string() == "CN=Demo Root CA,C=KR"
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert ok(api.get(f"/{sid}/templates/{tid}"))["parentCertId"] == rid

    # 2: GENERATE leaf written with its key (0600), verifying against the root.
    out, ids = outputs[1]
    assert "leaf.pem: OK" in out
    leaf = load_pem((work / "leaf.pem").read_text())
    assert leaf.subject.rfc4514_string() == "CN=api.example.com"
    assert oct((work / "leaf.key").stat().st_mode & 0o777) == "0o600"
    assert int(ids["L"]) == ok(api.get(f"/{sid}/certs/{ids['L']}"))["certId"]

    # 3: SIGN leaf from `openssl req`, same public key as the CSR's.
    out, _ = outputs[2]
    assert "www.pem: OK" in out
    www = load_pem((work / "www.pem").read_text())
    csr = x509.load_pem_x509_csr((work / "www.csr").read_bytes())
    assert www.public_key() == csr.public_key()
    assert www.subject.rfc4514_string() == "CN=www.example.com"

    # 4: revoked; OCSP (URL from the certificate) says so and verifies; CRL lists the serial.
    out, _ = outputs[3]
    assert '"resultCode":0' in out
    assert ok(api.get(f"/{sid}/certs/{ids['L']}"))["status"] == "REVOKED"
    assert out.count("Response verify OK") + stderr.count("Response verify OK") >= 1
    assert re.search(r"leaf\.pem: revoked", out), out
    assert re.search(r"www\.pem: good", out), out
    assert f"{leaf.serial_number:X}" in out.replace(":", "")
    assert f"127.0.0.1:{env.public_port}" in leaf.extensions.get_extension_for_class(
        x509.AuthorityInformationAccess).value[0].access_location.value
    crl = x509.load_der_x509_crl((work / "root.crl").read_bytes())
    assert crl.is_signature_valid(root.public_key())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(www.serial_number) is None

    # 5: a VIEWER client added and applied by SIGHUP: it reads, it may not write.
    out, _ = outputs[4]
    assert (env.tls / "alice.pem").exists()
    assert 'identity = "alice"' in env.config.read_text()
    assert f'"caStoreId":{sid}' in out
    assert re.search(r'"isSuccessful":false,"resultCode":403\d\d', out), out
    assert env.daemon.running
