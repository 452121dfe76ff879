"""A SIGKILL between a durable revocation and its OCSP re-signing (issue "revocation never
stale"): a restarted pcad must never answer `good` for a certificate it lists as REVOKED.

Runs on a private daemon (own quickstart folder, token, database and ports). Leaves are issued
first and the daemon restarted cleanly, so every leaf has a persisted pre-signed `good`. Then each
round sends many revokes at once from several threads and SIGKILLs the daemon while they are in
flight (some land between the revocation's fsync and its re-signed OCSP response). After each
restart, before anything else: every leaf the API lists as REVOKED, and every leaf whose revoke
was answered, answers `revoked` over OCSP (SHA-1 CertID, the pre-signed form), signed by the
issuer; every leaf listed VALID answers `good`.

`PCAD_REVOKE_CRASH_ROUNDS` (default 6) and `PCAD_REVOKE_CRASH_SEED` (random, printed) adjust it.
"""

import os
import random
import secrets
import threading
import time

import requests
from cryptography.x509 import ocsp

from pcadtest import Api, load_pem
from reliability_helpers import (
    Client, build_pki, leaf_request, ocsp_request, ocsp_url, private_pcad,
    verify_ocsp_signature,
)

ROUNDS = int(os.environ.get("PCAD_REVOKE_CRASH_ROUNDS", "6"))
PER_ROUND = 24          # revokes sent per round
THREADS = 8             # concurrent revoking clients
KILL_AFTER = (0.005, 0.12)
APPKEY = "revoke-crash"


def issue_leaves(pcad, pki, count):
    """`count` leaves issued with 4 threads: {certId: x509 certificate}."""
    out, lock, errors = {}, threading.Lock(), []

    def worker(n):
        client = Client(pcad, "admin", APPKEY, timeout=60)
        try:
            for _ in range(n):
                status, data, raw = client.call("POST", pki["issue_path"], leaf_request())
                if status != 200:
                    errors.append((status, raw[:300]))
                    continue
                body = data["body"]
                with lock:
                    out[body["certId"]] = load_pem(body["certificate"])
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(count // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:5]
    return out


def revoke_all(pcad, pki, cids, answered, cut, kill_time, problems):
    """Revokes `cids` from THREADS clients; records answered revokes, those cut off, and any
    failure before the kill in `problems`."""
    queue = list(cids)
    lock = threading.Lock()

    def worker():
        client = Client(pcad, "admin", APPKEY, timeout=20)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    cid = queue.pop()
                try:
                    status, data, raw = client.call(
                        "POST", f"/{pki['sid']}/certs/{cid}/revoke", {"reason": "KEY_COMPROMISE"})
                except requests.RequestException as e:
                    with lock:
                        cut.add(cid)
                    if kill_time[0] is None:
                        problems.append(f"revoke {cid} failed before the kill: {e!r}")
                        continue
                    return
                with lock:
                    if status == 200:
                        if data["body"]["status"] != "REVOKED":
                            problems.append(f"revoke {cid} answered {data['body']}")
                        answered.add(cid)
                    else:
                        cut.add(cid)
                        if kill_time[0] is None or status < 500:
                            problems.append(f"revoke {cid} answered {status}: {raw[:300]!r}")
        finally:
            client.close()

    return [threading.Thread(target=worker, daemon=True) for _ in range(THREADS)]


def ocsp_status(pcad, pki, cert):
    r = requests.post(ocsp_url(pcad, APPKEY, pki["sid"]),
                      data=ocsp_request(cert, pki["int_cert"]),
                      headers={"Content-Type": "application/ocsp-request"}, timeout=30)
    assert r.status_code == 200, r.status_code
    resp = ocsp.load_der_ocsp_response(r.content)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL, \
        (resp.response_status, r.content.hex())
    verify_ocsp_signature(resp, pki["int_cert"])
    assert resp.serial_number == cert.serial_number
    return resp.certificate_status


def listed_status(client, sid):
    """{certId: status} of every leaf of the store."""
    status, data, raw = client.call("GET", f"/{sid}/certs?type=leaf&size=1000&page=0")
    assert status == 200, (status, raw[:300])
    body = data["body"]
    assert len(body["items"]) == body["totalCount"], "more than one page"
    return {item["certId"]: item["status"] for item in body["items"]}


def test_sigkill_during_revocations_never_leaves_a_stale_good(tmp_path_factory):
    seed = int(os.environ.get("PCAD_REVOKE_CRASH_SEED", secrets.randbits(32)))
    rng = random.Random(seed)
    print(f"\nrevoke crash: {ROUNDS} rounds, seed {seed} (PCAD_REVOKE_CRASH_SEED to replay)")
    answered, cut = set(), set()
    problems = []
    with private_pcad(tmp_path_factory, "revcrash") as pcad:
        pki = build_pki(Api(pcad, "admin", APPKEY), "revcrash")
        leaves = issue_leaves(pcad, pki, ROUNDS * PER_ROUND + 8)
        # A clean restart: every leaf's pre-signed `good` is on disk and loaded at start-up.
        pcad.daemon.stop()
        pcad.daemon.start()
        for cid in list(leaves)[:4]:
            assert ocsp_status(pcad, pki, leaves[cid]) == ocsp.OCSPCertStatus.GOOD
        pending = list(leaves)
        rng.shuffle(pending)
        landed_total = 0
        for rnd in range(ROUNDS):
            batch, pending = pending[:PER_ROUND], pending[PER_ROUND:]
            kill_time = [None]
            threads = revoke_all(pcad, pki, batch, answered, cut, kill_time, problems)
            for t in threads:
                t.start()
            time.sleep(rng.uniform(*KILL_AFTER))
            kill_time[0] = time.monotonic()
            pcad.daemon.kill9()
            for t in threads:
                t.join(30)
                assert not t.is_alive(), "a revoking client hung after the kill"
            pcad.daemon.start()

            # First thing after the restart: the OCSP answers of this round's leaves.
            checker = Client(pcad, "admin", APPKEY, timeout=30)
            try:
                statuses = listed_status(checker, pki["sid"])
            finally:
                checker.close()
            round_landed = 0
            for cid in batch:
                got = ocsp_status(pcad, pki, leaves[cid])
                listed = statuses.get(cid)
                if listed == "REVOKED" and cid not in answered:
                    round_landed += 1  # durable, its answer cut off: the window under test
                if cid in answered and listed != "REVOKED":
                    problems.append(f"round {rnd}: answered revoke of {cid} listed {listed}")
                want = ocsp.OCSPCertStatus.REVOKED if listed == "REVOKED" or cid in answered \
                    else ocsp.OCSPCertStatus.GOOD
                if got != want:
                    problems.append(f"round {rnd}: leaf {cid} listed {listed} "
                                    f"(revoke {'answered' if cid in answered else 'cut off'}) "
                                    f"but OCSP says {got}")
            landed_total += round_landed
            print(f"round {rnd}: {sum(1 for c in batch if c in answered)} revokes answered, "
                  f"{round_landed} durable but unanswered, "
                  f"{sum(1 for c in batch if statuses.get(c) == 'VALID')} not revoked")

        # At the end, every leaf of every round once more (older rounds' responses too).
        checker = Client(pcad, "admin", APPKEY, timeout=30)
        try:
            statuses = listed_status(checker, pki["sid"])
        finally:
            checker.close()
        for cid, cert in leaves.items():
            want = ocsp.OCSPCertStatus.REVOKED if statuses[cid] == "REVOKED" \
                else ocsp.OCSPCertStatus.GOOD
            got = ocsp_status(pcad, pki, cert)
            if got != want:
                problems.append(f"end: leaf {cid} listed {statuses[cid]} but OCSP says {got}")
        assert pcad.daemon.running, pcad.daemon.log_tail()

    summary = (f"{ROUNDS} kills: {len(answered)} revokes answered, {len(cut)} cut off "
               f"({landed_total} of them durable); seed {seed}")
    print(summary)
    assert answered, f"no revoke answered at all: {summary}"
    assert not problems, summary + "\n" + "\n".join(problems[:40])
