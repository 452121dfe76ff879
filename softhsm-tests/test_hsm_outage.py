"""HSM outage without a restart (DESIGN.md "HSM availability", API.md 503/50300, OCSP).

A private daemon (hsm_lab.Lab: own quickstart folder, ports and token) whose PKCS#11 module is a
fault-injection pass-through around SoftHSM, so the token can fail while pcad runs:
- the module answers CKR_DEVICE_REMOVED / DEVICE_ERROR / TOKEN_NOT_PRESENT / GENERAL_ERROR /
  SESSION_HANDLE_INVALID (transient) or CKR_MECHANISM_INVALID (permanent) to every call;
- the SoftHSM token directory is moved away and back (what a root-owned operator or a failing
  disk does; chmod does not stop root). SoftHSM 2.6.1 then answers C_GetTokenInfo and
  C_GenerateKeyPair with CKR_GENERAL_ERROR, C_SignInit on a known key with
  CKR_OBJECT_HANDLE_INVALID, and C_FindObjects with no objects; it stays so, even after the
  directory is back, until C_Finalize/C_Initialize.

Expected of pcad throughout: management calls that need the HSM answer 503 (50300) within 1 s
and write nothing; OCSP keeps answering signed responses and CRLs keep downloading; /healthz
says 503 {"hsm":"down"}; recovery happens by itself within 30 s of the HSM coming back; a
refused PIN is never retried. The load test prints its figures.
"""

import re
import secrets
import subprocess
import time

import pytest
import requests
from cryptography import x509

import hsm_lab
from hsm_lab import CKR, Lab, Pki, envelope, issuance_load, leaf_body, ocsp_load, timed
from pcadtest import issuer_body, ok

FAST = 1.0  # a 503 must come within this many seconds
RECOVERY = 30.0  # healthz back within this many seconds of the HSM coming back


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("hsm-outage"))
    lab.start()
    yield lab
    lab.clear()
    gone = lab.tokens.with_name("tokens.gone")
    if gone.exists() and not lab.tokens.exists():
        gone.rename(lab.tokens)
    lab.stop()


@pytest.fixture(scope="module")
def pki(lab):
    api = lab.api(f"outage-{secrets.token_hex(3)}")
    pki = Pki(api, leaves=4, revoked=1)
    # A second store holding one issuer, for DELETE during an outage.
    doomed = api.create_store(hsm_lab.unique("doomed"))
    api.create_issuer(doomed["caStoreId"], issuer_body("EC", 256, max_depth=0))
    pki.doomed = doomed["caStoreId"]
    # The scheduler signs a new store's responses once at its first pass (≤ 5 s); wait for it
    # here so that no first pass falls inside an outage of the tests below (see
    # test_refresh_meeting_an_outage_keeps_signed_responses for what that does).
    wait_first_refresh(lab, pki.sid)
    for der, issuer, expected in pki.queries():
        r = hsm_lab.ocsp_send(requests, pki.ocsp_url(lab), der, "POST")
        assert hsm_lab.ocsp_verdict(r.status_code, r.content, expected) is None
    return pki


def refreshed(lab, sid):
    return re.search(rf"store {sid}: \d+ OCSP responses signed", lab.log_text())


def wait_first_refresh(lab, sid, timeout=7.0):
    deadline = time.monotonic() + timeout
    while not refreshed(lab, sid):
        assert time.monotonic() < deadline, "the scheduler never refreshed the new store"
        time.sleep(0.1)


def crl_state(lab, pki):
    r = requests.get(pki.crl_url(lab), timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:200])
    crl = x509.load_der_x509_crl(r.content)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return number, crl.last_update_utc, {e.serial_number for e in crl}


def private_key_ids(lab):
    out = lab.pkcs11_tool("--list-objects", "--type", "privkey", pin=lab.pin()).stdout
    return set(re.findall(r"(?m)^\s+ID:\s+([0-9a-f]+)", out))


def new_victim(pki):
    """A fresh VALID leaf to try to revoke during an outage (not in the OCSP load)."""
    resp = pki.api.issue(pki.sid, pki.template["templateId"], leaf_body())
    return resp["certId"], int(resp["serialNumber"], 16)


def snapshot(lab, pki, victim, doomed=None):
    api = pki.api
    return {
        "stores": api.store_count(),
        "certs": api.cert_count(pki.sid),
        "doomed store": api.get(f"/{doomed or pki.doomed}").status,
        "victim": api.cert(pki.sid, victim)["status"],
        "crl number": crl_state(lab, pki)[0],
    }


def management_calls(pki, victim, doomed=None):
    """The HSM-bound management calls, in the order they are tried during an outage."""
    api = pki.api
    doomed = doomed or pki.doomed
    return [
        ("issue leaf", lambda: api.post(pki.issue_path, leaf_body())),
        ("create issuer", lambda: api.post(f"/{pki.sid}/certs", issuer_body("EC", 256))),
        ("revoke", lambda: api.post(f"/{pki.sid}/certs/{victim}/revoke",
                                    {"reason": "KEY_COMPROMISE"})),
        ("renew CRL", lambda: api.call("POST", f"/{pki.sid}/certs/{pki.root['certId']}/crl",
                                       data="true")),
        ("delete store", lambda: api.delete(f"/{doomed}")),
    ]


def show(capsys, title, figures):
    with capsys.disabled():
        print(f"\n--- {title}")
        for k, v in figures.items():
            print(f"    {k:<42} {v}")


def outage(lab, pki, capsys, title, break_hsm, restore_hsm, hold=3.0):
    """Runs OCSP and issuance load through an outage; returns (figures, problems)."""
    problems = []
    victim, _ = new_victim(pki)
    keys_before = private_key_ids(lab)
    before = snapshot(lab, pki, victim)
    crl_before = crl_state(lab, pki)
    loads = [ocsp_load(lab, pki, "ocsp-1"), ocsp_load(lab, pki, "ocsp-2"),
             issuance_load(lab, pki)]
    for load in loads:
        load.start()
    time.sleep(1.0)

    break_hsm()
    t_break = time.monotonic()
    detected = lab.wait_health(up=False, timeout=5.0)
    if detected is None:
        problems.append("/healthz still 200 (hsm up) 5 s after the HSM broke")
    status, body = lab.healthz()

    calls = {}
    for name, call in management_calls(pki, victim):
        reply, seconds = timed(call)
        calls[name] = (envelope(reply), seconds)
        st, code, message = envelope(reply)
        if (st, code) != (503, 50300) or seconds >= FAST:
            problems.append(f"{name} during the outage: HTTP {st} resultCode {code} in "
                            f"{seconds:.3f} s ({message!r}); want 503/50300 within {FAST} s")
    if lab.wait_health(up=False, timeout=2.0) is None:
        problems.append("/healthz not 503 {\"hsm\":\"down\"} after the management calls")
    else:
        status, body = lab.healthz()
    crl_during = crl_state(lab, pki)  # CRL download works (asserts 200)
    time.sleep(max(0.0, hold - (time.monotonic() - t_break)))
    during = snapshot(lab, pki, victim)

    t_restore = time.monotonic()
    restore_hsm()
    recovered = lab.wait_health(up=True, timeout=RECOVERY)
    first_issue = None
    if recovered is None:
        problems.append(f"/healthz not back to 200 within {RECOVERY} s of the HSM coming back")
    else:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if pki.api.post(pki.issue_path, leaf_body()).status == 200:
                first_issue = time.monotonic() - t_restore
                break
            time.sleep(0.1)
        if first_issue is None:
            problems.append("issuance still failing 10 s after /healthz came back")
    time.sleep(0.5)
    for load in loads:
        load.stop()
        assert load.error is None, f"{load.name}: {load.error!r}"
    t_up = t_restore + (recovered or 0)

    # Nothing written while down.
    for key in before:
        if key != "certs" and during[key] != before[key]:
            problems.append(f"{key} changed during the outage: {before[key]} -> {during[key]}")
    # Certificates counted after the load saw its first 503 must not grow.
    ocsp_records = [r for load in loads[:2] for r in load.records]
    issue_records = loads[2].records
    down_window = [r for r in issue_records if t_break <= r[0] and r[1] <= t_restore]
    after_first_refusal = [r for r in down_window if r[2][0] == 503]
    late_successes = [r for r in down_window
                      if after_first_refusal and r[0] > after_first_refusal[0][1]
                      and r[2][0] == 200]
    if late_successes:
        problems.append(f"{len(late_successes)} leaves issued while the HSM was down")
    keys_after = private_key_ids(lab)
    if keys_after != keys_before:
        problems.append(f"token keys changed: +{sorted(keys_after - keys_before)} "
                        f"-{sorted(keys_before - keys_after)}")
    if crl_during[0] != crl_before[0]:
        problems.append(f"CRL number changed while down: {crl_before[0]} -> {crl_during[0]}")

    # OCSP: every answer a signed response with the right status, before, during and after.
    failures = [r for r in ocsp_records if r[2][0] is not None]
    in_outage = [r for r in ocsp_records if t_break <= r[0] <= t_up]
    if failures:
        kinds = sorted({str(r[2][0]) for r in failures})
        problems.append(f"{len(failures)} failed OCSP requests ({', '.join(kinds)})")
    last = {}
    for r in in_outage:
        if r[2][0] is None:
            last[r[2][1]] = r[2][2]
    queries = pki.queries()
    for index, der in last.items():
        hsm_lab.verify_ocsp_signature(der, queries[index][1])

    def count(records, pred):
        return sum(1 for r in records if pred(r[2]))

    issue_in_outage = down_window  # started after the break, ended before the restore
    refusals = [r for r in issue_in_outage if r[2][0] == 503]
    other = [r for r in issue_records if r[2][0] not in (200, 503)]
    if other:
        kinds = sorted({str(r[2]) for r in other})
        problems.append(f"{len(other)} issuance answers neither 200 nor 503: {', '.join(kinds)}")
    slow = [r for r in refusals if r[1] - r[0] >= FAST]
    if slow:
        problems.append(f"{len(slow)} issuance 503s took {FAST} s or more")
    if body is None or status != 503 or body.get("hsm") != "down":
        problems.append(f"/healthz during the outage: {status} {body}")

    figures = {
        "outage held (break -> restore)": f"{t_restore - t_break:.2f} s",
        "detection (/healthz 503 hsm down)": "never" if detected is None
        else f"{detected:.3f} s",
        "/healthz while down": f"{status} {body}",
        "recovery (restore -> /healthz 200)": "never" if recovered is None
        else f"{recovered:.2f} s",
        "first issuance after restore": "never" if first_issue is None
        else f"{first_issue:.2f} s",
        "OCSP requests (total / break -> healthz up)":
            f"{len(ocsp_records)} / {len(in_outage)}",
        "OCSP failures (total / break -> healthz up)":
            f"{len(failures)} / {sum(1 for r in in_outage if r[2][0] is not None)}",
        "issuance total 200/503/other": f"{count(issue_records, lambda o: o[0] == 200)}/"
        f"{count(issue_records, lambda o: o[0] == 503)}/{len(other)}",
        "issuance break -> restore 200/503/other":
            f"{count(issue_in_outage, lambda o: o[0] == 200)}/{len(refusals)}/"
            f"{count(issue_in_outage, lambda o: o[0] not in (200, 503))}",
        "issuance 503 latency max": f"{max((r[1] - r[0] for r in refusals), default=0):.3f} s",
    }
    for name, ((st, code, _), seconds) in calls.items():
        figures[f"{name} while down"] = f"{st}/{code} in {seconds * 1000:.0f} ms"
    figures["CRL download while down"] = f"200, number {crl_during[0]} (before {crl_before[0]})"
    show(capsys, title, figures)
    return figures, problems


def test_device_removed_under_load(lab, pki, capsys):
    """The module answers CKR_DEVICE_REMOVED to everything for ~3 s while OCSP and issuance
    load runs: 503s, OCSP unharmed, /healthz down, recovery on its own."""
    _, problems = outage(lab, pki, capsys, "outage: PKCS#11 module answers CKR_DEVICE_REMOVED",
                         lab.fault, lab.clear)
    assert not problems, "\n".join(problems)
    assert "is down (" in lab.log_text() and "is back after" in lab.log_text()


def test_token_directory_moved_away_and_back(lab, pki, capsys):
    """The SoftHSM token directory disappears for ~5 s and comes back (rename away and back;
    the same happens when a token is removed and re-created from its backup)."""
    gone = lab.tokens.with_name("tokens.gone")

    def restore():
        gone.rename(lab.tokens)

    try:
        _, problems = outage(lab, pki, capsys, "outage: SoftHSM token directory moved away",
                             lambda: lab.tokens.rename(gone), restore)
    finally:
        if gone.exists():
            gone.rename(lab.tokens)
        # Leave a working daemon for the next tests even if pcad never noticed the outage.
        if pki.api.post(pki.issue_path, leaf_body()).status != 200:
            lab.restart()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("code", ["DEVICE_ERROR", "TOKEN_NOT_PRESENT", "GENERAL_ERROR",
                                  "SESSION_HANDLE_INVALID"])
def test_transient_errors_fail_fast_and_recover(lab, pki, code):
    """Other transient CKR_* codes: issuance answers 503 in < 1 s, /healthz down, back by itself."""
    lab.fault(CKR[code])
    try:
        for attempt in range(3):
            reply, seconds = timed(lambda: pki.api.post(pki.issue_path, leaf_body()))
            st, rc, message = envelope(reply)
            assert (st, rc) == (503, 50300), f"attempt {attempt}: {reply}"
            assert seconds < FAST, f"attempt {attempt}: {seconds:.3f} s"
            assert "HSM" in message
        assert lab.wait_health(up=False, timeout=1.0) is not None
    finally:
        lab.clear()
    assert lab.wait_health(up=True, timeout=RECOVERY) is not None
    ok(pki.api.post(pki.issue_path, leaf_body()))


def test_permanent_error_is_not_an_outage(lab, pki):
    """CKR_MECHANISM_INVALID is the request's problem, not the device's: 500, HSM stays up,
    no recovery cycle."""
    downs = lab.log_text().count("is down (")
    lab.fault(CKR["MECHANISM_INVALID"])
    try:
        reply, seconds = timed(lambda: pki.api.post(pki.issue_path, leaf_body()))
        assert envelope(reply)[:2] == (500, 50000), reply
        assert seconds < FAST
        time.sleep(0.3)
        status, body = lab.healthz()
        assert status == 200 and body["hsm"] == "up" and body["status"] == "ok", body
    finally:
        lab.clear()
    ok(pki.api.post(pki.issue_path, leaf_body()))
    assert lab.log_text().count("is down (") == downs


@pytest.mark.parametrize("call", ["issue leaf", "create issuer", "revoke", "renew CRL",
                                  "delete store"])
def test_first_call_after_the_device_vanished(lab, pki, call):
    """No load: the management call is the first to meet the dead device (the HSM still looks
    up). It must answer 503/50300 within 1 s and write nothing, like the calls after it."""
    victim, victim_serial = new_victim(pki)
    doomed = pki.api.create_store(hsm_lab.unique("doomed"))["caStoreId"]
    pki.api.create_issuer(doomed, issuer_body("EC", 256, max_depth=0))
    keys = private_key_ids(lab)
    before = snapshot(lab, pki, victim, doomed)
    do = dict(management_calls(pki, victim, doomed))[call]
    assert lab.healthz()[0] == 200
    lab.fault()
    try:
        reply, seconds = timed(do)
        down = lab.wait_health(up=False, timeout=1.0)
        during = snapshot(lab, pki, victim, doomed)
    finally:
        lab.clear()
    assert lab.wait_health(up=True, timeout=RECOVERY) is not None
    problems = []
    st, rc, message = envelope(reply)
    if (st, rc) != (503, 50300) or seconds >= FAST:
        problems.append(f"{call}: HTTP {st} resultCode {rc} in {seconds:.3f} s ({message!r});"
                        f" want 503/50300 within {FAST} s")
    if down is None:
        problems.append("/healthz did not report the HSM down")
    changed = {k: (before[k], during[k]) for k in before if before[k] != during[k]}
    if changed:
        problems.append(f"written although refused: {changed}")
    keys_after = private_key_ids(lab)
    if call == "delete store" and during["doomed store"] == 404:
        if keys_after == keys:
            problems.append("the store was deleted but its issuer key is still in the token "
                            "after recovery (orphaned)")
    elif keys_after != keys:
        problems.append("token keys changed")
    if call == "revoke" and during["victim"] == "REVOKED":
        # The revocation was kept: then it must at least be published once the HSM is back.
        deadline = time.monotonic() + 7
        while victim_serial not in crl_state(lab, pki)[2] and time.monotonic() < deadline:
            time.sleep(0.5)
        if victim_serial not in crl_state(lab, pki)[2]:
            problems.append("the revocation kept during the outage is still not on the CRL "
                            "7 s after recovery")
    if call == "renew CRL":
        number = before["crl number"]
        reply = pki.api.call("POST", f"/{pki.sid}/certs/{pki.root['certId']}/crl", data="true")
        ok(reply)
        if crl_state(lab, pki)[0] != number + 1:
            problems.append(f"CRL numbers used by the refused renewal: next CRL is "
                            f"{crl_state(lab, pki)[0]}, want {number + 1}")
    assert not problems, "\n".join(problems)


def test_refresh_meeting_an_outage_keeps_signed_responses(lab, pki):
    """The scheduler's refresh is the first to meet the dead device (nothing else runs). The
    responses signed before are still valid: OCSP must keep serving them."""
    for _ in range(3):
        fresh = Pki(pki.api, leaves=3, revoked=0)
        if not refreshed(lab, fresh.sid):
            break
    else:
        pytest.skip("the scheduler's first pass always came before the outage could begin")
    url, queries = fresh.ocsp_url(lab), fresh.queries()

    def verdicts():
        return [hsm_lab.ocsp_verdict(r.status_code, r.content, expected)
                for der, _, expected in queries
                for r in [hsm_lab.ocsp_send(requests, url, der, "POST")]]

    assert verdicts() == [None] * len(queries)
    lab.fault()
    try:
        wait_first_refresh(lab, fresh.sid)
        during = verdicts()
    finally:
        lab.clear()
    assert lab.wait_health(up=True, timeout=RECOVERY) is not None
    assert during == [None] * len(queries), (
        f"OCSP answers after a refresh met the outage: {during}")


def test_wrong_pin_at_start_exits_without_retrying(lab):
    """A daemon whose PIN file holds a wrong PIN stops at start with a clear message, after
    exactly one C_Login; the token still takes the right PIN (not locked)."""
    wrong = "wrong-" + secrets.token_hex(6)
    pin_file = lab.dir / "hsm-pin-wrong"
    pin_file.write_text(wrong + "\n")
    pin_file.chmod(0o600)
    config = lab.variant_config("wrongpin", **{"hsm.pin_file": '"hsm-pin-wrong"'})
    t0 = time.monotonic()
    proc = subprocess.Popen([str(hsm_lab.PCAD_BIN), "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        pytest.fail(f"pcad serve with a wrong PIN still running after 20 s:\n{output}")
    seconds = time.monotonic() - t0
    assert proc.returncode != 0, output
    assert seconds < 10, f"took {seconds:.1f} s to give up"
    assert re.search(r"(?i)\bPIN\b", output) and re.search(r"(?i)login|refused", output), output
    assert wrong not in output and lab.pin() not in output
    attempts = lab.logins(proc.pid)
    assert attempts == [(proc.pid, CKR["PIN_INCORRECT"])], attempts
    flags = lab.pkcs11_tool("-T").stdout
    assert "locked" not in flags.lower(), flags
    lab.pkcs11_tool("--list-objects", "--type", "privkey", pin=lab.pin())


def test_pin_refused_while_recovering_stops_recovery(lab, pki):
    """The PIN changes while the device is away: the first reconnection is refused and
    recovery stops for good (one C_Login, no loop); the HSM stays down with a clear message."""
    old, new = lab.pin(), "new-" + secrets.token_hex(6)
    lab.fault()
    try:
        reply = pki.api.post(pki.issue_path, leaf_body())
        assert envelope(reply)[:2] == (503, 50300), reply
        assert lab.wait_health(up=False, timeout=1.0) is not None
        lab.pkcs11_tool("--change-pin", pin=old, new_pin=new)
        logins = len(lab.logins(lab.pid))
        lab.clear()
        deadline = time.monotonic() + 15
        while "refused the PIN while recovering" not in lab.log_text():
            assert time.monotonic() < deadline, lab.log_tail()
            time.sleep(0.1)
        time.sleep(6.0)  # longer than the longest backoff step (5 s)
        attempts = lab.logins(lab.pid)[logins:]
        assert attempts == [(lab.pid, CKR["PIN_INCORRECT"])], attempts
        assert lab.log_text().count("refused the PIN while recovering") == 1
        status, body = lab.healthz()
        assert (status, body.get("hsm")) == (503, "down"), (status, body)
        reply = pki.api.post(pki.issue_path, leaf_body())
        st, rc, message = envelope(reply)
        assert (st, rc) == (503, 50300), reply
        # Retrying will not help until the PIN is fixed and pcad restarted: say so somewhere.
        assert "PIN" in message or "PIN" in str(body), (
            f"neither the 503 ({message!r}) nor /healthz ({body}) says the PIN was refused")
        assert old not in reply.text and new not in reply.text
        assert old not in lab.log_text() and new not in lab.log_text()
    finally:
        lab.clear()
        lab.pkcs11_tool("--change-pin", pin=new, new_pin=old, check=False)
        lab.restart()
    ok(pki.api.post(pki.issue_path, leaf_body()))
