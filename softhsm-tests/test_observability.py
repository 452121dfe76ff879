"""Operations: /healthz on both listeners, Prometheus counters that move, and the audit trail
listing an end-to-end run's actions with the right identities."""

import re

import requests

from pcadtest import fails, issuer_body, ok, unique


def scrape(pcad):
    r = requests.get(f"http://127.0.0.1:{pcad.metrics_port}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    values = {}
    for line in r.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def counter(values, pattern):
    """Sum of every series whose name-with-labels matches `pattern`."""
    return sum(v for k, v in values.items() if re.fullmatch(pattern, k))


def audit_events(pcad, appkey, identity="admin", **params):
    cert = pcad.client_cert(identity)
    r = requests.get(f"{pcad.api_url}/v2.0/appkeys/{appkey}/audit-events", params=params,
                     cert=cert, verify=pcad.ca_pem, timeout=30)
    return r


def test_healthz_on_both_listeners(pcad):
    for url in (f"{pcad.public_url}/healthz", f"{pcad.api_url}/healthz"):
        r = requests.get(url, verify=pcad.ca_pem, timeout=10)
        assert r.status_code == 200, url
        assert r.json()["hsm"] == "up"
        assert r.headers.get("cache-control") == "no-store"


def test_metrics_move_with_traffic(pcad, admin):
    before = scrape(pcad)
    store = ok(admin.call("POST", "", json_body={"name": unique("metrics"), "ocspActive": True}))
    root = ok(admin.call("POST", f"/{store['caStoreId']}/certs", json_body=issuer_body("EC", 256)))
    ok(admin.call("GET", f"/{store['caStoreId']}/certs/{root['certId']}"))
    fails(admin.call("GET", "/999999999"), 404, 40400)
    r = requests.post(f"{pcad.public_url}/v2.0/appkeys/{admin.appkey}/ca-stores/"
                      f"{store['caStoreId']}/ocsp", data=b"garbage",
                      headers={"Content-Type": "application/ocsp-request"}, timeout=10)
    assert r.status_code == 200
    after = scrape(pcad)

    assert counter(after, r'pcad_http_requests_total\{route="stores",status="200"\}') \
        >= counter(before, r'pcad_http_requests_total\{route="stores",status="200"\}') + 1
    assert counter(after, r'pcad_http_requests_total\{route="store",status="404"\}') \
        >= counter(before, r'pcad_http_requests_total\{route="store",status="404"\}') + 1
    assert counter(after, r'pcad_ocsp_responses_total\{status="malformedRequest"\}') \
        >= counter(before, r'pcad_ocsp_responses_total\{status="malformedRequest"\}') + 1
    # The root signed its own certificate in the HSM: the sign latency histogram moved.
    assert after["pcad_hsm_sign_seconds_count"] >= before.get("pcad_hsm_sign_seconds_count", 0) + 1
    assert after['pcad_hsm_sign_seconds_bucket{le="+Inf"}'] == after["pcad_hsm_sign_seconds_count"]
    assert after["pcad_hsm_up"] == 1
    assert 'pcad_certificates{status="VALID"}' in after
    assert "pcad_ocsp_cached_responses" in after


def test_audit_trail_lists_actions_with_identities(pcad, admin, viewer, appkey):
    store = ok(admin.call("POST", "", json_body={"name": unique("audit"), "crlActive": True}))
    sid = store["caStoreId"]
    root = ok(admin.call("POST", f"/{sid}/certs", json_body=issuer_body("EC", 256)))
    template = ok(admin.call("POST", f"/{sid}/templates", json_body={
        "name": unique("t"), "parentCertId": root["certId"], "maxTTL": 86400,
        "keyInfo": {"algorithm": "EC", "keySize": 256}}))
    leaf = ok(admin.call("POST", f"/{sid}/templates/{template['templateId']}/certificates",
                         json_body={"mode": "GENERATE", "commonName": "a.example.com"}))
    ok(admin.call("POST", f"/{sid}/certs/{leaf['certId']}/revoke",
                  json_body={"reason": "SUPERSEDED"}))
    ok(admin.call("POST", f"/{sid}/certs/{root['certId']}/crl", data="true"))
    fails(viewer.call("POST", "", json_body={"name": unique("nope")}), 403, 40300)
    ok(admin.call("DELETE", f"/{sid}"))

    r = audit_events(pcad, appkey, size=100)
    events = ok_json(r)["items"]
    mine = [e for e in events if e["caStoreId"] == sid or e["result"].startswith("40300")]
    actions = [e["action"] for e in mine]
    # Newest first: the deletion is the first, the store's creation the last of this store.
    expected = ["STORE_DELETE", "STORE_CREATE", "CRL_RENEW", "CERT_REVOKE", "LEAF_ISSUE",
                "TEMPLATE_CREATE", "ISSUER_CREATE", "STORE_CREATE"]
    for action in expected:
        assert action in actions, (action, actions)
    assert actions.index("STORE_DELETE") < actions.index("CERT_REVOKE") < \
        actions.index("LEAF_ISSUE") < actions.index("ISSUER_CREATE")
    key_destroyed = [e for e in events if e["action"] == "KEY_DESTROY" and e["caStoreId"] == sid]
    assert key_destroyed and key_destroyed[0]["certId"] == root["certId"]
    assert key_destroyed[0]["result"] == "SUCCESS"

    by_action = {e["action"]: e for e in mine if e["result"] == "SUCCESS"}
    assert by_action["LEAF_ISSUE"]["identity"] == "pcad-admin"
    assert by_action["LEAF_ISSUE"]["serialNumber"] == leaf["serialNumber"]
    assert by_action["LEAF_ISSUE"]["templateId"] == template["templateId"]
    assert by_action["CERT_REVOKE"]["certId"] == leaf["certId"]
    refused = [e for e in mine if e["identity"] == "pcad-viewer"]
    assert refused and refused[0]["action"] == "STORE_CREATE"
    assert refused[0]["result"].startswith("40300")

    only = ok_json(audit_events(pcad, appkey, action="CERT_REVOKE", size=100))
    assert only["items"] and all(e["action"] == "CERT_REVOKE" for e in only["items"])
    future = ok_json(audit_events(pcad, appkey, **{"from": "2999-01-01 00:00:00"}))
    assert future["totalCount"] == 0
    page = ok_json(audit_events(pcad, appkey, size=2))
    assert len(page["items"]) == 2 and page["totalCount"] >= len(expected)


def test_audit_trail_is_admin_only_and_per_appkey(pcad, appkey):
    r = audit_events(pcad, appkey, identity="viewer")
    assert r.status_code == 403 and r.json()["header"]["resultCode"] == 40300
    r = requests.get(f"{pcad.api_url}/v2.0/appkeys/{appkey}/audit-events",
                     verify=pcad.ca_pem, timeout=10)
    assert r.status_code == 401
    other = ok_json(audit_events(pcad, unique("empty-appkey")))
    assert other["totalCount"] == 0


def ok_json(r):
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["header"]["isSuccessful"] is True
    return body["body"]
