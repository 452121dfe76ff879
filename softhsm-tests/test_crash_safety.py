"""Crash safety (issue "Reliability and security", item 2): concurrent issuance and revocation,
SIGKILL at a random moment, restart, and check that nothing answered was lost.

Runs on a private daemon (own quickstart folder, token, database and ports). Each round: 4 threads
issue leaves and 1 thread revokes leaves answered earlier, for 0.3-2 s, then the daemon gets
SIGKILL and is started again. Every 200 answer is recorded on the client side. After each restart:

- the first OCSP queries after /healthz answers are signed by the issuer and right: the last leaf
  revoked before the kill is `revoked`, the last leaf issued before the kill is `good`;
- every answered leaf is listed with its serial and the status its answers imply (answered
  revocations REVOKED; a revocation cut off by the kill may have happened or not); the leaves of
  the round (and all of them at the end) have the same PEM on GET;
- serials and certIds never repeat, across all rounds (also among leaves whose answer was lost);
- the issuer's CRL number never goes backwards, and the CRL lists every answered revocation;
- no request failed before the kill.

`PCAD_CRASH_ROUNDS` (default 20) and `PCAD_CRASH_SEED` (random by default, printed) adjust it.
"""

import os
import random
import secrets
import threading
import time

import requests
from cryptography.x509 import ocsp

from pcadtest import Api, load_pem, serial_matches
from reliability_helpers import (
    Client, build_pki, crl_number, leaf_request, ocsp_request, ocsp_url, private_pcad,
    verify_ocsp_signature,
)

ROUNDS = int(os.environ.get("PCAD_CRASH_ROUNDS", "20"))
ISSUING_THREADS = 4
KILL_AFTER = (0.3, 2.0)
APPKEY = "crash-safety"
REASONS = ["KEY_COMPROMISE", "SUPERSEDED", "CESSATION_OF_OPERATION", "UNSPECIFIED"]


class Ledger:
    """What the clients saw answered, and what failed when it should not have."""

    def __init__(self):
        self.lock = threading.Lock()
        self.issued = {}          # certId -> {"serial", "pem", "round"}
        self.serials = {}         # serial (int) -> certId
        self.revoked = {}         # certId -> {"reason", "round", "revokedAt"}
        self.revoke_cut = set()   # certIds whose revoke call the kill cut off
        self.to_revoke = []       # answered, never yet sent to revoke
        self.problems = []        # (round, text)
        self.kill_time = None     # monotonic time just before SIGKILL of the current round
        self.last_issued = None   # certId of the last answered issuance (any round)
        self.last_revoked = None  # certId of the last answered revocation (any round)

    def problem(self, rnd, text):
        with self.lock:
            self.problems.append((rnd, text))

    def failed_before_kill(self):
        """A failure is genuine unless it came after the kill (the request was cut off)."""
        kill = self.kill_time
        return kill is None or time.monotonic() < kill


def issuing_thread(pcad, pki, ledger, rnd, stop):
    client = Client(pcad, "admin", APPKEY, timeout=20)
    try:
        while not stop.is_set():
            try:
                status, data, raw = client.call("POST", pki["issue_path"], leaf_request())
            except requests.RequestException as e:
                if not ledger.failed_before_kill():
                    return  # cut off by the kill: the daemon is gone
                ledger.problem(rnd, f"issue raised before the kill: {e!r}")
                continue
            if status != 200:
                if ledger.failed_before_kill() or status < 500:
                    ledger.problem(rnd, f"issue answered {status}: {raw[:300]!r}")
                continue
            body = data["body"]
            cid, serial_hex, pem = body["certId"], body["serialNumber"], body["certificate"]
            cert = load_pem(pem)
            with ledger.lock:
                if not serial_matches(serial_hex, cert):
                    ledger.problems.append((rnd, f"serialNumber {serial_hex} is not the PEM's"))
                if cid in ledger.issued:
                    first = ledger.issued[cid]["serial"]
                    ledger.problems.append((rnd, f"certId {cid} answered twice "
                                                 f"({first:x} / {serial_hex})"))
                if cert.serial_number in ledger.serials:
                    ledger.problems.append((rnd, f"serial {serial_hex} answered twice"))
                ledger.issued[cid] = {"serial": cert.serial_number, "pem": pem, "round": rnd}
                ledger.serials[cert.serial_number] = cid
                ledger.to_revoke.append(cid)
                ledger.last_issued = cid
    finally:
        client.close()


def revoking_thread(pcad, pki, ledger, rnd, stop, rng):
    client = Client(pcad, "admin", APPKEY, timeout=20)
    try:
        while not stop.is_set():
            with ledger.lock:
                # Revoke about one leaf in three, the oldest not yet sent.
                cid = ledger.to_revoke.pop(0) if len(ledger.to_revoke) > 2 else None
                if cid is not None:
                    del ledger.to_revoke[:2]
            if cid is None:
                time.sleep(0.01)
                continue
            reason = rng.choice(REASONS)
            try:
                status, data, raw = client.call("POST", f"/{pki['sid']}/certs/{cid}/revoke",
                                                {"reason": reason})
            except requests.RequestException as e:
                with ledger.lock:
                    ledger.revoke_cut.add(cid)  # may or may not have happened
                if not ledger.failed_before_kill():
                    return  # cut off by the kill: the daemon is gone
                ledger.problem(rnd, f"revoke {cid} raised before the kill: {e!r}")
                continue
            if status != 200:
                with ledger.lock:
                    ledger.revoke_cut.add(cid)
                if ledger.failed_before_kill() or status < 500:
                    ledger.problem(rnd, f"revoke {cid} answered {status}: {raw[:300]!r}")
                continue
            body = data["body"]
            with ledger.lock:
                if body.get("status") != "REVOKED" or body.get("certId") != cid:
                    ledger.problems.append((rnd, f"revoke {cid} answered {body}"))
                ledger.revoked[cid] = {"reason": reason, "round": rnd,
                                       "revokedAt": body.get("revokedAt")}
                ledger.last_revoked = cid
    finally:
        client.close()


def first_ocsp_answers(pcad, pki, ledger, rnd):
    """Right after /healthz: the last revoked leaf is revoked, the last issued one good (or
    revoked, if the revoker got to it), both signed by the issuing CA. Returns seconds taken."""
    url = ocsp_url(pcad, APPKEY, pki["sid"])
    checks = []
    if ledger.last_revoked is not None:
        checks.append(("revoked", ledger.last_revoked))
    if ledger.last_issued is not None and ledger.last_issued != ledger.last_revoked:
        checks.append(("issued", ledger.last_issued))
    started = time.monotonic()
    for what, cid in checks:
        cert = load_pem(ledger.issued[cid]["pem"])
        r = requests.post(url, data=ocsp_request(cert, pki["int_cert"]),
                          headers={"Content-Type": "application/ocsp-request"}, timeout=30)
        if r.status_code != 200:
            ledger.problem(rnd, f"first OCSP ({what} {cid}) answered HTTP {r.status_code}")
            continue
        resp = ocsp.load_der_ocsp_response(r.content)
        if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            ledger.problem(rnd, f"first OCSP ({what} {cid}) is {resp.response_status} "
                                f"({r.content.hex()}), not a signed answer")
            continue
        try:
            verify_ocsp_signature(resp, pki["int_cert"])
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            ledger.problem(rnd, f"first OCSP ({what} {cid}) signature: {e!r}")
        if resp.serial_number != cert.serial_number:
            ledger.problem(rnd, f"first OCSP ({what} {cid}) names another serial")
        got = resp.certificate_status
        if cid in ledger.revoked:
            want = {ocsp.OCSPCertStatus.REVOKED}
        elif cid in ledger.revoke_cut:
            want = {ocsp.OCSPCertStatus.REVOKED, ocsp.OCSPCertStatus.GOOD}
        else:
            want = {ocsp.OCSPCertStatus.GOOD}
        if got not in want:
            ledger.problem(rnd, f"first OCSP ({what} {cid}) says {got}, expected "
                                f"{' or '.join(str(w) for w in want)}")
    return time.monotonic() - started


def listed_leaves(client, sid):
    """Every leaf of the store from the list route (paged by 1000)."""
    items, page = [], 0
    while True:
        status, data, raw = client.call("GET", f"/{sid}/certs?type=leaf&size=1000&page={page}")
        assert status == 200, (status, raw[:300])
        body = data["body"]
        items += body["items"]
        if len(body["items"]) < 1000:
            assert len(items) == body["totalCount"], (len(items), body["totalCount"])
            return items
        page += 1


def check_state(pcad, pki, ledger, rnd, client, details_for):
    """Everything answered so far is there; GETs the details of the certIds in `details_for`."""
    leaves = listed_leaves(client, pki["sid"])
    by_id = {}
    serials = set()
    for item in leaves:
        if item["certId"] in by_id:
            ledger.problem(rnd, f"certId {item['certId']} listed twice")
        by_id[item["certId"]] = item
        serial = int(item["serialNumber"], 16)
        if serial in serials:
            ledger.problem(rnd, f"serial {item['serialNumber']} listed twice")
        serials.add(serial)
    for cid, rec in ledger.issued.items():
        item = by_id.get(cid)
        if item is None:
            ledger.problem(rnd, f"answered leaf {cid} (round {rec['round']}) is gone")
            continue
        if int(item["serialNumber"], 16) != rec["serial"]:
            ledger.problem(rnd, f"leaf {cid}: serial {item['serialNumber']} listed, "
                                f"{rec['serial']:x} answered")
        want = ("REVOKED",) if cid in ledger.revoked else \
            ("REVOKED", "VALID") if cid in ledger.revoke_cut else ("VALID",)
        if item["status"] not in want:
            ledger.problem(rnd, f"leaf {cid}: status {item['status']}, expected "
                                f"{'/'.join(want)} (revocation answered in round "
                                f"{ledger.revoked.get(cid, {}).get('round')})")
    for cid in details_for:
        status, data, raw = client.call("GET", f"/{pki['sid']}/certs/{cid}")
        if status != 200:
            ledger.problem(rnd, f"GET leaf {cid}: {status} {raw[:200]!r}")
            continue
        detail = data["body"]
        rec = ledger.issued[cid]
        if detail["certificatePem"].strip() != rec["pem"].strip():
            ledger.problem(rnd, f"GET leaf {cid}: another PEM than answered")
        if int(detail["serialNumber"], 16) != rec["serial"]:
            ledger.problem(rnd, f"GET leaf {cid}: serial {detail['serialNumber']}")
        if cid in ledger.revoked:
            if detail["status"] != "REVOKED":
                ledger.problem(rnd, f"GET leaf {cid}: {detail['status']} after an answered revoke")
            elif detail["revocationReason"] != ledger.revoked[cid]["reason"]:
                ledger.problem(rnd, f"GET leaf {cid}: reason {detail['revocationReason']}, "
                                    f"revoked with {ledger.revoked[cid]['reason']}")
    return len(leaves)


def test_sigkill_during_concurrent_issuance_and_revocation(tmp_path_factory):
    seed = int(os.environ.get("PCAD_CRASH_SEED", secrets.randbits(32)))
    rng = random.Random(seed)
    print(f"\ncrash safety: {ROUNDS} rounds, seed {seed} (PCAD_CRASH_SEED to replay)")
    ledger = Ledger()
    started = time.monotonic()
    figures = []
    with private_pcad(tmp_path_factory, "crash") as pcad:
        pki = build_pki(Api(pcad, "admin", APPKEY), "crash")
        checker = Client(pcad, "admin", APPKEY, timeout=30)
        crl_before, _ = crl_number(pcad, APPKEY, pki["sid"], pki["int"]["certId"])
        for rnd in range(ROUNDS):
            ledger.kill_time = None
            stop = threading.Event()
            threads = [threading.Thread(target=issuing_thread,
                                        args=(pcad, pki, ledger, rnd, stop), daemon=True)
                       for _ in range(ISSUING_THREADS)]
            threads.append(threading.Thread(
                target=revoking_thread,
                args=(pcad, pki, ledger, rnd, stop, random.Random(rng.random())), daemon=True))
            issued_before, revoked_before = len(ledger.issued), len(ledger.revoked)
            for t in threads:
                t.start()
            time.sleep(rng.uniform(*KILL_AFTER))
            ledger.kill_time = time.monotonic()
            pcad.daemon.kill9()
            stop.set()
            for t in threads:
                t.join(30)
                assert not t.is_alive(), "a client thread hung after the kill"

            t0 = time.monotonic()
            pcad.daemon.start()  # the database opens and /healthz answers
            up = time.monotonic() - t0
            first_ocsp = first_ocsp_answers(pcad, pki, ledger, rnd)

            this_round = [cid for cid, rec in ledger.issued.items() if rec["round"] == rnd]
            last = rnd == ROUNDS - 1
            listed = check_state(pcad, pki, ledger, rnd, checker,
                                 list(ledger.issued) if last else this_round)

            number, on_crl = crl_number(pcad, APPKEY, pki["sid"], pki["int"]["certId"],
                                        checker.session)
            if number < crl_before:
                ledger.problem(rnd, f"CRL number went backwards: {crl_before} -> {number}")
            crl_before = max(crl_before, number)
            missing = [cid for cid in ledger.revoked
                       if ledger.issued[cid]["serial"] not in on_crl]
            if missing:
                ledger.problem(rnd, f"answered revocations not on the CRL (number {number}): "
                                    f"certIds {missing[:10]}{' ...' if len(missing) > 10 else ''}")
            figures.append((rnd, len(ledger.issued) - issued_before,
                            len(ledger.revoked) - revoked_before, listed, up, first_ocsp, number))
            print(f"round {rnd:2d}: +{figures[-1][1]:3d} issued +{figures[-1][2]:3d} revoked "
                  f"(listed {listed}, {listed - len(ledger.issued)} unanswered); restart "
                  f"{up:.2f} s; first OCSP {1000 * first_ocsp:.0f} ms; CRL #{number}")
        checker.close()
        assert pcad.daemon.running, pcad.daemon.log_tail()

    total = time.monotonic() - started
    summary = (f"{ROUNDS} kills in {total:.1f} s: {len(ledger.issued)} leaves and "
               f"{len(ledger.revoked)} revocations answered, {len(ledger.revoke_cut)} revocations "
               f"cut off; seed {seed}")
    print(summary)
    assert len(ledger.issued) >= ROUNDS, f"too little load to mean anything: {summary}"
    assert not ledger.problems, summary + "\n" + "\n".join(
        f"round {rnd}: {text}" for rnd, text in ledger.problems[:40])
