"""Key hygiene beyond test_hsm_keys.py (which checks that every private key in the token is
sensitive, never extractable and private, and that the shared daemon's argv and log hold no PIN):

- each issuer's key pair was generated inside the token (CKA_LOCAL, always sensitive), may only
  sign, is named by the label/CKA_ID scheme, and its public half is the certificate's key;
- no private key of an issuer (nor a GENERATE leaf's key, which pcad must not keep) exists on
  disk: the quickstart folder and the database folder are scanned for PEM and DER private keys
  and raw key bytes; the only private keys on disk are the TLS ones in tls/;
- the PIN shows in no argv or environment of the daemon and its children, no log line (through
  an outage, a recovery and a refused start), no API error body while the HSM is down, and no
  `pcad check-config` / `pcad serve` output when the PIN is wrong.
"""

import base64
import os
import re
import secrets
import tempfile
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import hsm_lab
from hsm_lab import Lab, Pki, envelope, leaf_body, tpl_body
from pcadtest import SOFTHSM_MODULE, issuer_body, load_pem, ok, run, token_objects, unique

SPKI = dict(encoding=serialization.Encoding.DER,
            format=serialization.PublicFormat.SubjectPublicKeyInfo)


# --------------------------------------------------------------------------------------------
# Issuer keys in the token and nowhere else (the shared session daemon)


@pytest.fixture(scope="module")
def issuers(pcad, admin):
    """A store with an EC-256 ROOT, an RSA-2048 INTERMEDIATE and an Ed25519 ROOT, a template,
    and GENERATE leaves whose private keys (returned to us) pcad must not have kept."""
    sid = admin.create_store(unique("hygiene"))["caStoreId"]
    root = admin.new_issuer(sid, issuer_body("EC", 256, max_depth=1))
    inter = admin.new_issuer(sid, issuer_body("RSA", 2048, kind="INTERMEDIATE",
                                              parent=root["certId"], max_depth=0, ttl=86400 * 30))
    edroot = admin.new_issuer(sid, issuer_body("ED25519", 256, max_depth=0))
    tpl = admin.create_template(sid, tpl_body(inter["certId"]))
    leaves = []
    for fmt in ("PEM", "PKCS8"):
        resp = admin.issue(sid, tpl["templateId"], leaf_body(privateKeyFormat=fmt))
        leaves.append(serialization.load_pem_private_key(resp["privateKey"].encode(), None))
    return {"sid": sid, "certs": [root, inter, edroot], "leaf_keys": leaves}


def block(out, label):
    """The `pkcs11-tool --list-objects` lines of the objects labelled `label`."""
    chunks = re.split(r"(?m)^(?=\S)", out)
    return [c for c in chunks if re.search(rf"(?m)^\s+label:\s+{re.escape(label)}\s*$", c)]


def test_issuer_keys_were_made_in_the_token_and_only_sign(pcad, admin, issuers):
    privs = token_objects(pcad, "privkey")
    env = dict(os.environ, SOFTHSM2_CONF=str(pcad.softhsm_conf))
    for cert in issuers["certs"]:
        label = f"pcad/{admin.appkey}/{issuers['sid']}/{cert['certId']}"
        mine = [o for o in privs if o.get("label") == label]
        assert len(mine) == 1, f"{label}: {len(mine)} private keys in the token"
        key = mine[0]
        # Generated inside (CKA_LOCAL, CKA_ALWAYS_SENSITIVE), never exportable, sign only.
        assert {"sensitive", "always sensitive", "never extractable", "local"} <= \
            set(key["Access"]), key
        assert [u.strip() for u in key.get("Usage", "").split(",")] == ["sign"], key
        assert 32 <= len(key["ID"]) <= 40, key
        # The public half in the token is the certificate's key.
        cert_key = load_pem(cert["certificatePem"]).public_key()
        token_key = read_public_key(env, key["ID"])
        if token_key is not None:
            assert token_key.public_bytes(**SPKI) == cert_key.public_bytes(**SPKI), label
        else:
            # OpenSC cannot export every key (e.g. P-384): compare the listed public point.
            listing = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", "pcad",
                           "--list-objects", "--type", "pubkey"], env=env).stdout
            if isinstance(cert_key, ec.EllipticCurvePublicKey):
                raw = cert_key.public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
            else:
                raw = cert_key.public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
            assert any(raw.hex() in b for b in block(listing, label)), label


def read_public_key(env, key_id):
    """The token's public key object `key_id` (pkcs11-tool --read-object), None if OpenSC
    cannot export it."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pub"
        proc = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", "pcad",
                    "--read-object", "--type", "pubkey", "--id", key_id, "-o", out],
                   env=env, check=False)
        if proc.returncode != 0 or not out.exists() or not out.stat().st_size:
            return None
        data = out.read_bytes()
    if data.startswith(b"-----BEGIN"):
        return serialization.load_pem_public_key(data)
    return serialization.load_der_public_key(data)


def der_tlv_end(data, i):
    """End offset of the DER TLV starting at `i`, or None if its header is not plausible."""
    if i + 2 > len(data):
        return None
    n = data[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3 or j + k > len(data):
            return None
        n = int.from_bytes(data[j:j + k], "big")
        j += k
    return j + n if j + n <= len(data) else None


KEY_START = re.compile(rb"\x02\x01\x00[\x30\x02]|\x02\x01\x01\x04")


def der_private_keys(data):
    """Every DER private key (PKCS#8, PKCS#1, SEC1) inside `data`: [(offset, key)]."""
    found = []
    for m in KEY_START.finditer(data):
        i = m.start()
        for header in (2, 3, 4, 5):
            s = i - header
            if s < 0 or data[s] != 0x30:
                continue
            end = der_tlv_end(data, s)
            if end is None or end - s < 40 or end <= i:
                continue
            try:
                key = serialization.load_der_private_key(data[s:end], None)
            except Exception:  # noqa: BLE001 - not a key (any parse error)
                continue
            found.append((s, key))
            break
    return found


PEM_KEY = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED |OPENSSH )?PRIVATE KEY)-----"
                     rb"[\s\S]*?-----END \1-----")


def raw_private(key):
    """The private value's bytes as a key store would hold them."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        return key.private_numbers().private_value.to_bytes(size, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    if isinstance(key, rsa.RSAPrivateKey):
        d = key.private_numbers().d
        return d.to_bytes((d.bit_length() + 7) // 8, "big")
    raise AssertionError(type(key))


def test_no_issuer_or_leaf_private_key_on_disk(pcad, issuers):
    text = pcad.config.read_text()
    storage = re.search(r'(?ms)^\[storage\].*?^path\s*=\s*"([^"]+)"', text).group(1)
    db_dir = (pcad.dir / storage).resolve()
    token_dir = Path(re.search(r"(?m)^directories\.tokendir\s*=\s*(\S+)",
                               pcad.softhsm_conf.read_text()).group(1)).resolve()
    assert db_dir.is_dir() and any(db_dir.rglob("*")), f"no database in {db_dir}"
    issuer_spkis = {load_pem(c["certificatePem"]).public_key().public_bytes(**SPKI)
                    for c in issuers["certs"]}
    leaf_secrets = [raw_private(k) for k in issuers["leaf_keys"]]
    leaf_spkis = {k.public_key().public_bytes(**SPKI) for k in issuers["leaf_keys"]}

    roots = [pcad.dir] + ([db_dir] if not db_dir.is_relative_to(pcad.dir) else [])
    files = [p for r in roots for p in r.rglob("*")
             if p.is_file() and not p.resolve().is_relative_to(token_dir)]
    assert any(p.resolve().is_relative_to(db_dir) for p in files)
    problems, tls_keys = [], 0
    for path in files:
        data = path.read_bytes()
        where = path.relative_to(pcad.dir) if path.is_relative_to(pcad.dir) else path
        in_tls = path.parent == pcad.tls
        keys = [(f"PEM at {m.start()}", serialization.load_pem_private_key(m.group(0), None))
                for m in PEM_KEY.finditer(data)
                if b"ENCRYPTED" not in m.group(1) and b"OPENSSH" not in m.group(1)]
        keys += [(f"DER at {off}", k) for off, k in der_private_keys(data)]
        for what, key in keys:
            spki = key.public_key().public_bytes(**SPKI)
            if spki in issuer_spkis:
                problems.append(f"{where}: {what} is an ISSUER private key")
            elif spki in leaf_spkis:
                problems.append(f"{where}: {what} is a GENERATE leaf's private key")
            elif not in_tls:
                problems.append(f"{where}: {what}: a private key outside tls/")
            else:
                tls_keys += 1
        for secret in leaf_secrets:
            if secret in data or base64.b64encode(secret) in data:
                problems.append(f"{where}: holds a GENERATE leaf's private value")
    assert not problems, "\n".join(problems)
    assert tls_keys >= 3, "expected at least the server, admin and viewer keys in tls/"


# --------------------------------------------------------------------------------------------
# The PIN (a private daemon whose HSM can fail)


@pytest.fixture(scope="module")
def hlab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("key-hygiene"))
    lab.start()
    yield lab
    lab.clear()
    lab.stop()


@pytest.fixture(scope="module")
def hpki(hlab):
    return Pki(hlab.api(f"hygiene-{secrets.token_hex(3)}"), leaves=2, revoked=0)


def wrong_pin_config(lab, name="badpin"):
    wrong = f"Wr0ng-{secrets.token_hex(5)}"
    pin_file = lab.dir / f"hsm-pin-{name}"
    pin_file.write_text(wrong + "\n")
    pin_file.chmod(0o600)
    return lab.variant_config(name, **{"hsm.pin_file": f'"hsm-pin-{name}"'}), wrong


def test_pin_not_in_error_bodies_while_the_hsm_is_down(hlab, hpki):
    api, sid = hpki.api, hpki.sid
    pin = hlab.pin()
    victim = hpki.leaves[0][0]
    hlab.fault()
    bodies = []
    try:
        calls = [
            api.post(hpki.issue_path, leaf_body()),
            api.post(f"/{sid}/certs", issuer_body("EC", 256)),
            api.post(f"/{sid}/certs/{victim}/revoke", {"reason": "KEY_COMPROMISE"}),
            api.call("POST", f"/{sid}/certs/{hpki.root['certId']}/crl", data="true"),
            api.delete(f"/{sid}"),
            api.post(hpki.issue_path, leaf_body()),
        ]
        assert hlab.wait_health(up=False, timeout=1.0) is not None
        refused = [c for c in calls if envelope(c)[:2] == (503, 50300)]
        assert len(refused) >= 4, calls  # the first call may meet the device (see the outage tests)
        bodies += [c.text for c in calls]
        bodies.append(requests.get(f"{hlab.public_url}/healthz", timeout=5).text)
        bodies.append(requests.get(f"http://127.0.0.1:{hlab.metrics_port}/metrics",
                                   timeout=5).text)
    finally:
        hlab.clear()
    assert hlab.wait_health(up=True, timeout=30) is not None
    hlab.fault(hsm_lab.CKR["MECHANISM_INVALID"])  # a permanent error: 500 with a request id
    try:
        bodies.append(api.post(hpki.issue_path, leaf_body()).text)
    finally:
        hlab.clear()
    leaks = [b for b in bodies if pin in b]
    assert not leaks, leaks


def test_check_config_and_serve_never_print_the_pin(hlab):
    config, wrong = wrong_pin_config(hlab)
    right = hlab.pin()
    proc = run([hsm_lab.PCAD_BIN, "check-config", "--config", config], check=False, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert re.search(r"(?i)\bPIN\b", output) and re.search(r"(?i)login|refused", output), output
    assert wrong not in output and right not in output, output

    good = run([hsm_lab.PCAD_BIN, "check-config", "--config", hlab.config], check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    assert right not in good.stdout + good.stderr

    serve = run([hsm_lab.PCAD_BIN, "serve", "--config", config], check=False, timeout=60)
    output = serve.stdout + serve.stderr
    assert serve.returncode != 0, output
    assert wrong not in output and right not in output, output


def descendants(pid):
    """`pid` and every process below it (through /proc/*/stat parent ids)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def test_pin_not_in_argv_environment_or_log_through_an_outage(hlab, hpki):
    pin = hlab.pin().encode()
    # An outage and its recovery, so that the HSM's warning and recovery lines are in the log.
    hlab.fault()
    try:
        assert envelope(hpki.api.post(hpki.issue_path, leaf_body()))[0] == 503
        assert hlab.wait_health(up=False, timeout=1.0) is not None
    finally:
        hlab.clear()
    assert hlab.wait_health(up=True, timeout=30) is not None
    ok(hpki.api.post(hpki.issue_path, leaf_body()))
    log = hlab.log.read_bytes()
    assert b"is down (" in log and b"is back after" in log
    assert pin not in log

    procs = descendants(hlab.pid)
    assert hlab.pid in procs
    for p in procs:
        try:
            cmdline = Path(f"/proc/{p}/cmdline").read_bytes()
            environ = Path(f"/proc/{p}/environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        assert pin not in cmdline, f"PIN in the argv of {p}"
        assert pin not in environ, f"PIN in the environment of {p}"
    assert b"serve" in Path(f"/proc/{hlab.pid}/cmdline").read_bytes()
