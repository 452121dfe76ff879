"""Dense ids (issue #12, item 1): in a fresh database each kind counts 1, 2, 3 … on its own
(stores, certificates, templates, audit events), and the next id after a graceful restart or a
`kill -9` and restart is the next number: no jumps, no reuse.

Runs on a private daemon (own quickstart folder, token, database and ports)."""

import pytest
import requests

from pcadtest import Api, issuer_body, ok, unique
from reliability_helpers import leaf_request, leaf_template, private_pcad

APPKEY = "ids"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with private_pcad(tmp_path_factory, "ids") as pcad:
        yield pcad


def audit_ids(pcad):
    r = requests.get(f"{pcad.api_url}/v2.0/appkeys/{APPKEY}/audit-events",
                     params={"size": 1000}, cert=pcad.client_cert("admin"),
                     verify=pcad.ca_pem, timeout=30)
    assert r.status_code == 200, r.text
    return sorted(e["eventId"] for e in r.json()["body"]["items"])


def build(api):
    """A store with a root, an intermediate, a template and a leaf kept in the server."""
    sid = api.create_store(unique("ids"))["caStoreId"]
    root = api.create_issuer(sid, issuer_body("EC", 256, max_depth=1, ttl=10 * 365 * 86400,
                                              cn=unique("Ids Root")))
    inter = api.create_issuer(sid, issuer_body("EC", 256, kind="INTERMEDIATE",
                                               parent=root["certId"], max_depth=0,
                                               ttl=5 * 365 * 86400, cn=unique("Ids CA")))
    tid = api.create_template(sid, leaf_template(inter["certId"]))["templateId"]
    leaf = api.issue(sid, tid, leaf_request())
    return sid, [root["certId"], inter["certId"], leaf["certId"]], tid


def test_each_kind_counts_one_two_three_and_continues_after_restart_and_kill9(env):
    api = Api(env, "admin", APPKEY)

    sid, certs, tid = build(api)
    assert (sid, certs, tid) == (1, [1, 2, 3], 1)
    # A second template and store count on their own; refused creations use up no id.
    tpl = leaf_template(2)
    assert api.create_template(sid, tpl)["templateId"] == 2
    assert api.post(f"/{sid}/templates", tpl).status == 409
    taken = unique("ids")
    assert api.create_store(taken)["caStoreId"] == 2
    assert api.post("", {"name": taken}).status == 409
    events = audit_ids(env)
    assert events == list(range(1, len(events) + 1)), events

    env.daemon.restart()
    sid, certs, tid = build(api)
    assert (sid, certs, tid) == (3, [4, 5, 6], 3)

    # Kill -9 right after answered writes: every answered id survives, the next is the next.
    env.daemon.kill9()
    env.daemon.start()
    assert ok(api.get(f"/{sid}/certs/6"))["certId"] == 6
    sid, certs, tid = build(api)
    assert (sid, certs, tid) == (4, [7, 8, 9], 4)

    env.daemon.kill9()
    env.daemon.start()
    assert api.create_store(unique("ids"))["caStoreId"] == 5
    # Deleted ids are not reused.
    ok(api.delete("/5"))
    assert api.create_store(unique("ids"))["caStoreId"] == 6

    events = audit_ids(env)
    assert events == list(range(1, len(events) + 1)), events
