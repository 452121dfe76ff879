"""Backups while pcad serves (issue #12, item 5): `pcad backup` under load (issuing and
revoking) → `pcad restore` into a new folder with a copy of the token → every certificate, CRL
and OCSP answer present and verifying; `pcad backup-check` lists the HSM keys the snapshot
expects and finds a missing one; a damaged snapshot is refused before anything is written.

Runs on a private daemon. The restored pcad takes over the original's ports (the URLs written
into the certificates), as a replacement machine would."""

import os
import re
import shutil
import stat
import subprocess
import threading
import time

import requests
from cryptography import x509
from cryptography.x509 import ocsp

import conftest
from conftest import Daemon, PCAD_BIN
from pcadtest import Api, load_pem, ok, openssl_verify, run
from reliability_helpers import (
    Client, build_pki, leaf_request, ocsp_request, private_pcad, verify_ocsp_signature,
)

APPKEY = "backup"


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.issued = {}       # certId -> (pem, answered at, sent at)
        self.revoked = {}      # certId -> answered at
        self.errors = []


def issuer_loop(pcad, pki, ledger, stop):
    client = Client(pcad, "admin", APPKEY)
    while not stop.is_set():
        sent = time.monotonic()
        status, data, raw = client.call("POST", pki["issue_path"], leaf_request())
        if status != 200:
            ledger.errors.append(f"issue {status}: {raw[:200]!r}")
            continue
        with ledger.lock:
            ledger.issued[data["body"]["certId"]] = (data["body"]["certificate"],
                                                     time.monotonic(), sent)
    client.close()


def revoker_loop(pcad, pki, ledger, stop):
    client = Client(pcad, "admin", APPKEY)
    while not stop.is_set():
        with ledger.lock:
            todo = [c for c in ledger.issued if c not in ledger.revoked and c % 3 == 0]
        if not todo:
            time.sleep(0.02)
            continue
        status, _, raw = client.call("POST", f"/{pki['sid']}/certs/{todo[0]}/revoke",
                                     {"reason": "KEY_COMPROMISE"})
        if status != 200:
            ledger.errors.append(f"revoke {status}: {raw[:200]!r}")
            continue
        with ledger.lock:
            ledger.revoked[todo[0]] = time.monotonic()
    client.close()


def pcad_cmd(*args, check=True):
    proc = subprocess.run([str(PCAD_BIN), *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    if check:
        assert proc.returncode == 0, f"pcad {args[0]}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def copy_setup(src, dst):
    """A second machine: the config, PIN, TLS material, NCP secrets and a copy of the token, no
    database (what /etc/pcad and the HSM's own backup hold)."""
    dst.mkdir()
    for name in ["hsm-pin", "pcad.toml"]:
        shutil.copy2(src / name, dst / name)
    shutil.copytree(src / "tls", dst / "tls")
    if (src / "ncp").is_dir():
        shutil.copytree(src / "ncp", dst / "ncp")
    shutil.copytree(src / "tokens", dst / "tokens")
    (dst / "softhsm2.conf").write_text(
        (src / "softhsm2.conf").read_text().replace(str(src), str(dst)))
    (dst / "pcad.toml").write_text((dst / "pcad.toml").read_text().replace(str(src), str(dst)))
    return dst / "pcad.toml"


def ocsp_status(pcad, url, cert, issuer):
    r = requests.post(url, data=ocsp_request(cert, issuer),
                      headers={"Content-Type": "application/ocsp-request"}, timeout=30)
    assert r.status_code == 200, r.status_code
    resp = ocsp.load_der_ocsp_response(r.content)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    verify_ocsp_signature(resp, issuer)
    assert resp.serial_number == cert.serial_number
    return resp.certificate_status


def urls_of(cert):
    crl = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return (crl[0].full_name[0].value,
            [d.access_location.value for d in aia
             if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP][0])


def test_backup_under_load_restores_everything(tmp_path_factory):
    with private_pcad(tmp_path_factory, "backup") as env:
        api = Api(env, "admin", APPKEY)
        pki = build_pki(api, "backup")
        ledger, stop = Ledger(), threading.Event()
        threads = [threading.Thread(target=issuer_loop, args=(env, pki, ledger, stop))
                   for _ in range(2)]
        threads.append(threading.Thread(target=revoker_loop, args=(env, pki, ledger, stop)))
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            snap = env.dir.parent / "pcad.snapshot"
            backup_started = time.monotonic()
            out = pcad_cmd("backup", "--config", env.config, "--out", snap).stdout
            backup_done = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert not ledger.errors, ledger.errors[:5]
        assert "from the running pcad" in out and "verified" in out, out
        assert stat.S_IMODE(snap.stat().st_mode) == 0o600
        # Answered before the backup began: in it. Sent after it ended: not in it. (A request
        # sent during the backup may have been written before the snapshot or after it.)
        before = {c for c, (_, at, _) in ledger.issued.items() if at < backup_started}
        revoked_before = {c for c, at in ledger.revoked.items() if at < backup_started}
        after = {c for c, (_, _, sent) in ledger.issued.items() if sent > backup_done}
        assert len(before) >= 20 and revoked_before and after, (len(before), revoked_before)
        print(f"backup under load: {len(ledger.issued)} leaves issued, {len(ledger.revoked)} "
              f"revoked; backup took {backup_done - backup_started:.2f} s")
        # The snapshot names both issuer keys.
        key_ids = re.findall(r"(?m)^  ([0-9a-f]{16,})$", out)
        assert len(key_ids) == 2, out

        # A second machine with a copy of the token; the original stops (same ports, URLs).
        config = copy_setup(env.dir, env.dir.parent / "restored")
        env.daemon.stop()

    check = pcad_cmd("backup-check", "--config", config, "--in", snap).stdout
    assert check.count("present in the token") == 2 and "MISSING" not in check, check

    restored_out = pcad_cmd("restore", "--config", config, "--in", snap).stdout
    assert "restored into" in restored_out and "MISSING" not in restored_out, restored_out
    again = pcad_cmd("restore", "--config", config, "--in", snap, check=False)
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr

    directory = config.parent
    restored = conftest.Pcad(directory, env.api_port, env.public_port, env.metrics_port, "")
    restored.daemon = Daemon(config, directory / "pcad.log", env.api_port, env.public_port)
    conftest._DAEMONS.append(restored.daemon)
    try:
        restored.daemon.start()
        api = Api(restored, "admin", APPKEY)
        inter = pki["int_cert"]
        listed, page = set(), 0
        while True:
            body = ok(api.get(f"/{pki['sid']}/certs",
                              params={"type": "leaf", "size": 500, "page": page}))
            listed |= {c["certId"] for c in body["items"]}
            if len(body["items"]) < 500:
                break
            page += 1
        assert before <= listed, sorted(before - listed)[:10]
        assert not (after & listed), "a leaf asked for after the backup finished is in it"

        crl_url, ocsp_url = urls_of(load_pem(ledger.issued[min(before)][0]))
        r = requests.get(crl_url, timeout=30)
        assert r.status_code == 200, crl_url
        crl = x509.load_der_x509_crl(r.content)
        assert crl.is_signature_valid(inter.public_key())
        on_crl = {e.serial_number for e in crl}

        for i, cid in enumerate(sorted(listed)):
            detail = api.cert(pki["sid"], cid)
            cert = load_pem(detail["certificatePem"])
            if cid in ledger.issued:
                assert detail["certificatePem"].strip() == ledger.issued[cid][0].strip(), cid
            revoked = detail.get("revokedAt") is not None or detail.get("status") == "REVOKED"
            if cid in revoked_before:
                assert revoked, (cid, detail)
            status = ocsp_status(restored, ocsp_url, cert, inter)
            want = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
            assert status == want, (cid, status, detail)
            assert (cert.serial_number in on_crl) == revoked, cid
            if i < 5:
                openssl_verify(detail["certificatePem"], pki["root"]["certificatePem"],
                               [pki["int"]["certificatePem"]])
        # Ids go on from the snapshot's counters.
        assert api.create_store()["caStoreId"] == pki["sid"] + 1
    finally:
        restored.daemon.stop()
        conftest._DAEMONS.remove(restored.daemon)


def test_backup_check_finds_a_missing_key_and_damage_is_refused(tmp_path_factory):
    with private_pcad(tmp_path_factory, "backupcheck") as env:
        api = Api(env, "admin", APPKEY)
        build_pki(api, "check")
        snap = env.dir.parent / "snap"
        pcad_cmd("backup", "--config", env.config, "--out", snap)
        refused = pcad_cmd("backup", "--config", env.config, "--out", snap, check=False)
        assert refused.returncode != 0 and "already exists" in refused.stderr
        # Delete one issuer key from the token: backup-check names it missing and exits 1.
        out = pcad_cmd("backup-check", "--config", env.config, "--in", snap).stdout
        ids = re.findall(r"(?m)^  ([0-9a-f]+)  present in the token$", out)
        assert len(ids) == 2, out
        env.daemon.stop()
        # With pcad stopped, backup reads the database itself.
        offline = pcad_cmd("backup", "--config", env.config, "--out", snap.with_name("off"))
        assert "pcad not running" in offline.stdout and "verified" in offline.stdout
        pin = env.pin()
        victim = ids[0]
        run(["pkcs11-tool", "--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label",
             "pcad", "--login", "--pin", pin, "--delete-object", "--type", "privkey", "--id",
             victim], env={**os.environ, "SOFTHSM2_CONF": str(env.softhsm_conf)})
        proc = pcad_cmd("backup-check", "--config", env.config, "--in", snap, check=False)
        assert proc.returncode == 1, proc
        assert f"{victim}  MISSING from the token" in proc.stdout, proc.stdout

        damaged = env.dir.parent / "damaged"
        data = bytearray(snap.read_bytes())
        data[len(data) // 2] ^= 0x40
        damaged.write_bytes(bytes(data))
        target = env.dir / "target.toml"
        target.write_text(env.config.read_text().replace('path = "data"', 'path = "data2"'))
        proc = pcad_cmd("restore", "--config", target, "--in", damaged, check=False)
        assert proc.returncode != 0 and "snapshot" in proc.stderr, proc.stderr
        assert not (env.dir / "data2").exists() or not any((env.dir / "data2").iterdir())
