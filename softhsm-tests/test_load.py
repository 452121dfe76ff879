"""Bounded load (issue "Reliability and security", item 7): 64 OCSP clients, 8 issuing clients and
1 revoking client at once on loopback, for `PCAD_LOAD_SECONDS` (default 20) seconds, on a private
daemon. Every request must succeed (0 errors) and be right:

- OCSP (half POST, half GET in the seed's base64url form) on a pool of leaves made beforehand:
  the revoked ones `revoked`, the others `good` (a sample of the answers is checked to be signed
  by the issuing CA); leaves the
  revoking client revoked during the run answer `revoked` from the moment the revoke returned;
- issuance answers a leaf whose serial is the answered serialNumber; serials never repeat;
- revocation answers REVOKED;
- afterwards the store lists exactly what was answered.

Prints requests per second and p50/p99 latency per kind (run pytest with -s to see them; they are
also recorded as the test's `load_figures` property). Python clients on a small machine measure the
client as much as the daemon: these are figures, not assertions (STYLE.md: no timed assertions).
"""

import base64
import http.client
import os
import random
import threading
import time

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.x509 import ocsp

from pcadtest import Api, load_pem, serial_matches
from reliability_helpers import (
    Client, Stats, build_pki, format_summary, leaf_request, ocsp_request, private_pcad,
    verify_ocsp_signature,
)

DURATION = float(os.environ.get("PCAD_LOAD_SECONDS", "20"))
OCSP_CLIENTS, ISSUING_CLIENTS = 64, 8
POOL_GOOD, POOL_REVOKED = 24, 8
APPKEY = "load"
GOOD, REVOKED = ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.issued = {}            # certId -> serial
        self.to_revoke = []         # certIds issued during the run, not yet revoked
        self.revoked_live = []      # (OCSP request DER, serial) revoked during the run
        self.revoked_ids = set()
        self.ocsp_checked = 0


def ocsp_client(pcad, path, issuer, pool, shared, stats, seed):
    rng = random.Random(seed)
    checked = 0
    conn = http.client.HTTPConnection("127.0.0.1", pcad.public_port, timeout=30)
    try:
        while not shared.stop.is_set():
            with shared.lock:
                live = shared.revoked_live[rng.randrange(len(shared.revoked_live))] \
                    if shared.revoked_live and rng.random() < 0.2 else None
            der, serial, want = (live[0], live[1], REVOKED) if live else rng.choice(pool)
            kind = "ocsp_get" if rng.random() < 0.5 else "ocsp_post"
            t0 = time.monotonic()
            try:
                if kind == "ocsp_post":
                    conn.request("POST", path, body=der,
                                 headers={"Content-Type": "application/ocsp-request"})
                else:
                    b64 = base64.urlsafe_b64encode(der).decode().rstrip("=")
                    conn.request("GET", f"{path}/{b64}")
                r = conn.getresponse()
                content = r.read()
            except (OSError, http.client.HTTPException) as e:
                stats.error(kind, repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", pcad.public_port, timeout=30)
                continue
            elapsed = time.monotonic() - t0
            if r.status != 200:
                stats.error(kind, f"HTTP {r.status}: {content[:100]!r}")
                continue
            try:
                resp = ocsp.load_der_ocsp_response(content)
                assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, \
                    resp.response_status
                assert resp.serial_number == serial, "another serial"
                assert resp.certificate_status == want, (resp.certificate_status, want)
                checked += 1
                if checked % 50 == 1:  # a sample: ECDSA verification costs client CPU
                    verify_ocsp_signature(resp, issuer)
            except (AssertionError, ValueError, InvalidSignature) as e:
                stats.error(kind, f"serial {serial:x}: {e!r}")
                continue
            stats.ok(kind, elapsed)
    finally:
        conn.close()


def issuing_client(pcad, pki, shared, stats):
    client = Client(pcad, "admin", APPKEY, timeout=30)
    try:
        while not shared.stop.is_set():
            t0 = time.monotonic()
            try:
                status, data, raw = client.call("POST", pki["issue_path"], leaf_request())
            except requests.RequestException as e:
                stats.error("issue", repr(e))
                continue
            elapsed = time.monotonic() - t0
            if status != 200:
                stats.error("issue", f"HTTP {status}: {raw[:200]!r}")
                continue
            body = data["body"]
            cert = load_pem(body["certificate"])
            if not serial_matches(body["serialNumber"], cert):
                stats.error("issue", f"serialNumber {body['serialNumber']} is not the PEM's")
                continue
            with shared.lock:
                if cert.serial_number in shared.issued.values() or body["certId"] in shared.issued:
                    stats.error("issue", f"repeated serial/certId {body}")
                shared.issued[body["certId"]] = cert.serial_number
                shared.to_revoke.append((body["certId"], cert))
            stats.ok("issue", elapsed)
    finally:
        client.close()


def revoking_client(pcad, pki, shared, stats):
    client = Client(pcad, "admin", APPKEY, timeout=30)
    try:
        while not shared.stop.is_set():
            with shared.lock:
                item = shared.to_revoke.pop() if shared.to_revoke else None
            if item is None:
                time.sleep(0.01)
                continue
            cid, cert = item
            t0 = time.monotonic()
            try:
                status, data, raw = client.call("POST", f"/{pki['sid']}/certs/{cid}/revoke",
                                                {"reason": "SUPERSEDED"})
            except requests.RequestException as e:
                stats.error("revoke", repr(e))
                continue
            elapsed = time.monotonic() - t0
            if status != 200 or data["body"].get("status") != "REVOKED":
                stats.error("revoke", f"HTTP {status}: {raw[:200]!r}")
                continue
            with shared.lock:
                shared.revoked_ids.add(cid)
                shared.revoked_live.append((ocsp_request(cert, pki["int_cert"]),
                                            cert.serial_number))
            stats.ok("revoke", elapsed)
    finally:
        client.close()


def test_bounded_load(tmp_path_factory, record_property):
    with private_pcad(tmp_path_factory, "load") as pcad:
        api = Api(pcad, "admin", APPKEY)
        pki = build_pki(api, "load")
        sid, issuer = pki["sid"], pki["int_cert"]

        # The OCSP pool: leaves made before the run, some revoked; one signed answer checked.
        pool = []
        for i in range(POOL_GOOD + POOL_REVOKED):
            leaf = api.issue(sid, pki["tid"], leaf_request(f"pool-{i}.example.com"))
            cert = load_pem(leaf["certificate"])
            want = GOOD
            if i >= POOL_GOOD:
                api.post(f"/{sid}/certs/{leaf['certId']}/revoke", {"reason": "KEY_COMPROMISE"})
                want = REVOKED
            pool.append((ocsp_request(cert, issuer), cert.serial_number, want))
        path = f"/v2.0/appkeys/{APPKEY}/ca-stores/{sid}/ocsp"
        probe = requests.post(f"{pcad.public_url}{path}", data=pool[-1][0], timeout=30,
                              headers={"Content-Type": "application/ocsp-request"})
        resp = ocsp.load_der_ocsp_response(probe.content)
        verify_ocsp_signature(resp, issuer)
        assert resp.certificate_status == REVOKED
        leaves_before = api.cert_count(sid, "leaf")

        shared, stats = Shared(), Stats()
        threads = [threading.Thread(target=ocsp_client,
                                    args=(pcad, path, issuer, pool, shared, stats, n),
                                    daemon=True) for n in range(OCSP_CLIENTS)]
        threads += [threading.Thread(target=issuing_client, args=(pcad, pki, shared, stats),
                                     daemon=True) for _ in range(ISSUING_CLIENTS)]
        threads.append(threading.Thread(target=revoking_client, args=(pcad, pki, shared, stats),
                                        daemon=True))
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(DURATION)
        shared.stop.set()
        for t in threads:
            t.join(60)
        duration = time.monotonic() - started
        hung = sum(t.is_alive() for t in threads)

        rows = stats.summary(duration)
        table = format_summary(rows, duration)
        print(f"\nload: {OCSP_CLIENTS} OCSP + {ISSUING_CLIENTS} issuing + 1 revoking clients, "
              f"loopback\n{table}")
        record_property("load_figures", {k: {m: (round(v, 2) if isinstance(v, float) else v)
                                             for m, v in r.items()} for k, r in rows.items()})

        assert hung == 0, f"{hung} client threads still running after the run\n{table}"
        errors = {k: (n, stats.samples.get(k)) for k, n in stats.errors.items()}
        assert not errors, f"errors under load: {errors}\n{table}"
        for kind in ("ocsp_post", "ocsp_get", "issue", "revoke"):
            assert rows.get(kind, {}).get("ok", 0) > 0, f"no successful {kind}\n{table}"

        # Afterwards: the daemon is up and holds exactly what was answered.
        assert pcad.daemon.running, pcad.daemon.log_tail()
        assert api.cert_count(sid, "leaf") == leaves_before + len(shared.issued), table
        assert len(set(shared.issued.values())) == len(shared.issued), "repeated serials"
        listed = {}
        page = 0
        while True:
            body = api.get(f"/{sid}/certs", params={"type": "leaf", "size": 1000,
                                                     "page": page}).json["body"]
            listed.update({c["certId"]: c for c in body["items"]})
            if len(body["items"]) < 1000:
                break
            page += 1
        for cid, serial in shared.issued.items():
            assert int(listed[cid]["serialNumber"], 16) == serial, cid
            want = "REVOKED" if cid in shared.revoked_ids else "VALID"
            assert listed[cid]["status"] == want, (cid, listed[cid]["status"])
