"""Role and tenancy matrix (issue "Reliability and security", item 4): every route of the API,
called by {no certificate, VIEWER, ADMIN, identity without a role for the appkey, ADMIN of another
appkey}, on both path editions, answers exactly what API.md "Authentication and roles" says:

| route kind   | none | VIEWER | ADMIN | no role | ADMIN of another appkey |
|--------------|------|--------|-------|---------|-------------------------|
| read         | 401  | 200    | 200   | 403     | 403                     |
| write        | 401  | 403    | 200   | 403     | 403                     |
| ADMIN read   | 401  | 403    | 200   | 403     | 403                     |  (audit events)
| public       | 200  | 200    | 200   | 200     | 200                     |  (CRL der/pem, OCSP)

Errors carry the envelope (40100 / 40300, `body: null`); a refused write changes nothing. Public
routes also answer without a certificate on the plain-HTTP listener. An ADMIN of appkey B asking
under B's path for appkey A's ids gets 404 40400 (never 403), and OCSP `unauthorized`.

test_roles.py checks stores and issuer certificates in depth; this is the one table over every
route (templates, leaf issue, revoke, CRL info/renew/der/pem, OCSP GET/POST, audit events too).
"""

import base64
import json

import pytest
import requests
from cryptography import x509
from cryptography.x509 import ocsp

from conftest import EXTRA_IDENTITIES
from pcadtest import EDITIONS, Api, Reply, fails, issuer_body, load_pem, ok, unique
from reliability_helpers import leaf_request, leaf_template, ocsp_request

A, B = "tenant-a", "tenant-b"
assert EXTRA_IDENTITIES["tenant-a-admin"] == (A, "ADMIN")
assert EXTRA_IDENTITIES["tenant-a-viewer"] == (A, "VIEWER")
assert EXTRA_IDENTITIES["tenant-b-admin"] == (B, "ADMIN")
assert EXTRA_IDENTITIES["norole"] is None

READ, WRITE, ADMIN_READ, PUBLIC = "read", "write", "admin-read", "public"
IDENTITIES = {  # pytest id -> identity name (None: no client certificate)
    "no-cert": None,
    "viewer": "tenant-a-viewer",
    "admin": "tenant-a-admin",
    "no-role": "norole",
    "other-appkey-admin": "tenant-b-admin",
}
EXPECTED = {  # identity id -> route kind -> (HTTP status, resultCode or None for success)
    "no-cert": {READ: (401, 40100), WRITE: (401, 40100), ADMIN_READ: (401, 40100),
                PUBLIC: (200, None)},
    "viewer": {READ: (200, None), WRITE: (403, 40300), ADMIN_READ: (403, 40300),
               PUBLIC: (200, None)},
    "admin": {READ: (200, None), WRITE: (200, None), ADMIN_READ: (200, None),
              PUBLIC: (200, None)},
    "no-role": {READ: (403, 40300), WRITE: (403, 40300), ADMIN_READ: (403, 40300),
                PUBLIC: (200, None)},
    "other-appkey-admin": {READ: (403, 40300), WRITE: (403, 40300), ADMIN_READ: (403, 40300),
                           PUBLIC: (200, None)},
}

# (route, method, path, kind, body, victim). `path` is formatted with the world's ids, `{ed}` the
# path edition prefix and `{victim}` the id of a fresh object the call may change or delete.
# Bodies are valid, so a call wrongly allowed would succeed (and be caught by the state check).
ROUTES = [
    ("list-stores", "GET", "{ed}", READ, None, None),
    ("create-store", "POST", "{ed}", WRITE, "store", None),
    ("get-store", "GET", "{ed}/{s}", READ, None, None),
    ("put-store", "PUT", "{ed}/{victim}", WRITE, "store", "store"),
    ("delete-store", "DELETE", "{ed}/{victim}", WRITE, None, "store"),
    ("list-certs", "GET", "{ed}/{s}/certs", READ, None, None),
    ("create-cert", "POST", "{ed}/{s}/certs", WRITE, "root", None),
    ("get-cert", "GET", "{ed}/{s}/certs/{leaf}", READ, None, None),
    ("download-cert", "GET", "{ed}/{s}/certs/{leaf}/download", READ, None, None),
    ("revoke-cert", "POST", "{ed}/{s}/certs/{victim}/revoke", WRITE, "revoke", "leaf"),
    ("crl-info", "GET", "{ed}/{s}/certs/{i}/crl", READ, None, None),
    ("crl-renew", "POST", "{ed}/{s}/certs/{i}/crl", WRITE, "true", None),
    ("crl-der", "GET", "{ed}/{s}/certs/{i}/crl/der", PUBLIC, None, None),
    ("crl-pem", "GET", "{ed}/{s}/certs/{i}/crl/pem", PUBLIC, None, None),
    ("list-templates", "GET", "{ed}/{s}/templates", READ, None, None),
    ("create-template", "POST", "{ed}/{s}/templates", WRITE, "template", None),
    ("get-template", "GET", "{ed}/{s}/templates/{t}", READ, None, None),
    ("put-template", "PUT", "{ed}/{s}/templates/{victim}", WRITE, "template", "template"),
    ("delete-template", "DELETE", "{ed}/{s}/templates/{victim}", WRITE, None, "template"),
    ("issue-leaf", "POST", "{ed}/{s}/templates/{t}/certificates", WRITE, "leaf", None),
    ("ocsp-post", "POST", "{ed}/{s}/ocsp", PUBLIC, "ocsp", None),
    ("ocsp-get", "GET", "{ed}/{s}/ocsp/{ocsp_get}", PUBLIC, None, None),
    ("audit-events", "GET", "audit-events", ADMIN_READ, None, None),
]


@pytest.fixture(scope="module")
def world(pcad):
    """Under tenant-a: a store (CRL and OCSP on) with ROOT > INTERMEDIATE > template > leaf.
    Under tenant-b: a store with a ROOT. Made by the global admin."""
    api = Api(pcad, "admin", A)
    store = api.create_store(unique("matrix-a"), crlActive=True, ocspActive=True)
    s = store["caStoreId"]
    root = api.create_issuer(s, issuer_body(max_depth=1, ttl=10 * 365 * 86400))
    inter = api.new_issuer(s, issuer_body(kind="INTERMEDIATE", parent=root["certId"],
                                          max_depth=0, ttl=5 * 365 * 86400))
    tpl = api.create_template(s, leaf_template(inter["certId"], unique("matrix-tpl")))
    leaf = api.issue(s, tpl["templateId"], leaf_request("matrix.example.com"))
    der = ocsp_request(load_pem(leaf["certificate"]), load_pem(inter["certificatePem"]))
    api_b = Api(pcad, "admin", B)
    store_b = api_b.create_store(unique("matrix-b"))
    root_b = api_b.create_issuer(store_b["caStoreId"], issuer_body(max_depth=0))
    return {
        "api": api, "s": s, "i": inter["certId"], "t": tpl["templateId"],
        "leaf": leaf["certId"], "leaf_serial": load_pem(leaf["certificate"]).serial_number,
        "template": ok(api.get(f"/{s}/templates/{tpl['templateId']}")),
        "ocsp_der": der, "ocsp_get": base64.urlsafe_b64encode(der).decode().rstrip("="),
        "b_store": store_b["caStoreId"], "b_root": root_b["certId"],
    }


def request_body(kind, world, victim):
    """(bytes, content type) of a valid body of `kind`."""
    if kind is None:
        return None, None
    if kind == "store":
        return json.dumps({"name": unique("matrix-store")}).encode(), "application/json"
    if kind == "root":
        return json.dumps(issuer_body(max_depth=0, ttl=86400)).encode(), "application/json"
    if kind == "revoke":
        return json.dumps({"reason": "SUPERSEDED"}).encode(), "application/json"
    if kind == "true":
        return b"true", "application/json"
    if kind == "template":
        name = victim["name"] if victim and "name" in victim else unique("matrix-tpl")
        return json.dumps(leaf_template(world["i"], name)).encode(), "application/json"
    if kind == "leaf":
        return json.dumps(leaf_request()).encode(), "application/json"
    if kind == "ocsp":
        return world["ocsp_der"], "application/ocsp-request"
    raise AssertionError(kind)


def make_victim(world, kind):
    """A fresh object a call may change or delete, and its state as the global admin sees it."""
    api, s = world["api"], world["s"]
    if kind == "store":
        store = api.create_store(unique("matrix-victim"))
        return store["caStoreId"], store
    if kind == "leaf":
        leaf = api.issue(s, world["t"], leaf_request())
        return leaf["certId"], api.cert(s, leaf["certId"])
    if kind == "template":
        tpl = api.create_template(s, leaf_template(world["i"], unique("matrix-victim")))
        return tpl["templateId"], tpl
    raise AssertionError(kind)


def victim_state(world, kind, vid):
    api, s = world["api"], world["s"]
    path = {"store": f"/{vid}", "leaf": f"/{s}/certs/{vid}", "template": f"/{s}/templates/{vid}"}
    reply = api.get(path[kind])
    return ok(reply) if reply.status == 200 else reply.status


def snapshot(pcad, world):
    """What a refused write could have changed: counts, and the CRL number of the issuer."""
    api, s = world["api"], world["s"]
    crl = requests.get(f"{pcad.public_url}/v2.0/appkeys/{A}/ca-stores/{s}/certs/{world['i']}"
                       "/crl/der", timeout=30)
    number = x509.load_der_x509_crl(crl.content).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number
    return {"stores": api.store_count(), "certs": api.cert_count(s),
            "templates": api.template_count(s), "crlNumber": number}


def send(pcad, identity, appkey, path, method, data=None, content_type=None, listener="api"):
    """`path` is relative to `/v2.0/appkeys/{appkey}/`."""
    base = pcad.api_url if listener == "api" else pcad.public_url
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.request(
        method, f"{base}/v2.0/appkeys/{appkey}/{path}", data=data, headers=headers,
        cert=None if identity is None else pcad.client_cert(identity),
        verify=pcad.ca_pem, timeout=60)
    return Reply(response)


def check_success(route, reply, world):
    """The 200 answer of `route` is the right kind of answer; returns a problem or None."""
    if reply.status != 200:
        return f"HTTP {reply.status}, expected 200: {reply.text[:200]}"
    ctype = (reply.headers.get("Content-Type") or "").split(";")[0]
    if route in ("crl-der", "crl-pem"):
        try:
            if route == "crl-der":
                x509.load_der_x509_crl(reply.content)
            else:
                x509.load_pem_x509_crl(reply.content)
        except ValueError as e:
            return f"not a CRL: {e}"
        return None if ctype == "application/pkix-crl" else f"Content-Type {ctype}"
    if route.startswith("ocsp"):
        if ctype != "application/ocsp-response":
            return f"Content-Type {ctype}"
        resp = ocsp.load_der_ocsp_response(reply.content)
        if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return f"OCSP {resp.response_status}, expected a signed answer"
        return None if resp.serial_number == world["leaf_serial"] else "OCSP for another serial"
    if route == "download-cert":
        return None if b"BEGIN CERTIFICATE" in reply.content else "not a PEM"
    try:
        ok(reply)
    except AssertionError as e:
        return f"not a success envelope: {e}"
    if route == "revoke-cert" and reply.json["body"]["status"] != "REVOKED":
        return "not REVOKED"
    if route == "crl-renew" and reply.json["body"] is not True:
        return f"body {reply.json['body']!r}, expected true"
    return None


@pytest.mark.parametrize("who", list(IDENTITIES))
@pytest.mark.parametrize("edition", EDITIONS)
def test_every_route_for_every_identity(pcad, world, edition, who):
    identity = IDENTITIES[who]
    mismatches = []
    for route, method, template, kind, body_kind, victim_kind in ROUTES:
        status, code = EXPECTED[who][kind]
        vid = victim = None
        if victim_kind:
            vid, victim = make_victim(world, victim_kind)
        data, ctype = request_body(body_kind, world, victim)
        ids = {k: world[k] for k in ("s", "i", "t", "leaf", "ocsp_get")}
        path = template.format(ed=edition, victim=vid, **ids)
        before = snapshot(pcad, world) if status != 200 else None
        reply = send(pcad, identity, A, path, method, data, ctype)
        where = f"{method} {path} [{route}]"
        if status == 200:
            problem = check_success(route, reply, world)
            if problem:
                mismatches.append(f"{where}: {problem}")
        else:
            try:
                fails(reply, status, code)
            except AssertionError as e:
                mismatches.append(f"{where}: expected {status} {code}, got {reply!r} ({e})")
            after = snapshot(pcad, world)
            changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
            if changed:
                mismatches.append(f"{where}: refused, yet changed {changed}")
            if victim_kind and victim_state(world, victim_kind, vid) != victim:
                mismatches.append(f"{where}: refused, yet the {victim_kind} {vid} changed")
        if kind == PUBLIC and identity is None:
            # Public routes answer without a certificate on the plain-HTTP listener too.
            public = send(pcad, None, A, path, method, data, ctype, listener="public")
            problem = check_success(route, public, world)
            if problem:
                mismatches.append(f"{where} on the public listener: {problem}")
    assert not mismatches, f"{who} on /{edition}:\n" + "\n".join(mismatches)


@pytest.mark.parametrize("edition", EDITIONS)
def test_another_appkeys_ids_are_404_for_every_route(pcad, world, edition):
    """tenant-b's ADMIN asks under tenant-b's path for tenant-a's ids: 404 40400 on every route
    that names an id (OCSP: `unauthorized`), and tenant-a's objects stay as they were."""
    before = snapshot(pcad, world)
    template_before = world["template"]
    mismatches = []
    ids = {k: world[k] for k in ("s", "i", "t", "leaf", "ocsp_get")}
    for route, method, template, kind, body_kind, victim_kind in ROUTES:
        if "{" not in template.replace("{ed}", ""):
            continue  # list stores, create store, audit events: no id of tenant-a to ask for
        # Victim routes aim at tenant-a's long-lived objects here: a leak would show as a change.
        fill = dict(ids, victim={"store": world["s"], "leaf": world["leaf"],
                                 "template": world["t"]}.get(victim_kind))
        path = template.format(ed=edition, **fill)
        data, ctype = request_body(body_kind, world, world["template"]
                                   if victim_kind == "template" else None)
        # tenant-a's cert / template under tenant-b's own store, for routes naming one.
        names_more = victim_kind not in (None, "store") or any(
            f"{{{k}}}" in template for k in ("i", "t", "leaf", "ocsp_get"))
        in_b = path.replace(f"/{world['s']}/", f"/{world['b_store']}/", 1) \
            if names_more else None
        for where, p in ((path, path), (f"{path} (in tenant-b's store)", in_b)):
            if p is None:
                continue
            reply = send(pcad, "tenant-b-admin", B, p, method, data, ctype)
            label = f"{method} {where} [{route}]"
            if route.startswith("ocsp"):
                if reply.status != 200 or ocsp.load_der_ocsp_response(reply.content) \
                        .response_status != ocsp.OCSPResponseStatus.UNAUTHORIZED:
                    mismatches.append(f"{label}: expected OCSP unauthorized, got {reply!r}")
                continue
            try:
                fails(reply, 404, 40400)
            except AssertionError as e:
                mismatches.append(f"{label}: expected 404 40400, got {reply!r} ({e})")
    after = snapshot(pcad, world)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"cross-tenant calls changed tenant-a: {changed}"
    assert world["api"].cert(world["s"], world["leaf"])["status"] == "VALID"
    assert ok(world["api"].get(f"/{world['s']}/templates/{world['t']}")) == template_before
    listed = ok(Api(pcad, "tenant-b-admin", B, edition).get("", params={"size": 1000}))["items"]
    assert world["s"] not in {x["caStoreId"] for x in listed}
    assert not mismatches, "\n".join(mismatches)
