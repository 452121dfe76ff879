"""Authentication and roles on every management route of this phase (stores CRUD; issuer
certificates list/get/create/download), on both path editions (API.md "Authentication and
roles", "Paths"): 401 without a client certificate, 403 without a role or with a role too low,
404 for another tenant's ids; the public listener serves no management route."""

import pytest
import requests

from conftest import EXTRA_IDENTITIES
from pcadtest import EDITIONS, Api, fails, issuer_body, ok, unique

TENANT_A, TENANT_B = "tenant-a", "tenant-b"
assert EXTRA_IDENTITIES["tenant-a-admin"] == (TENANT_A, "ADMIN")
assert EXTRA_IDENTITIES["tenant-a-viewer"] == (TENANT_A, "VIEWER")
assert EXTRA_IDENTITIES["norole"] is None


@pytest.fixture(scope="module")
def world(pcad):
    """A store with a ROOT under tenant-a and one under tenant-b, made by the global admin."""
    out = {}
    for tenant in (TENANT_A, TENANT_B):
        api = Api(pcad, "admin", tenant)
        store = api.create_store(unique(f"roles-{tenant}"))
        cert = api.create_issuer(store["caStoreId"], issuer_body(max_depth=1))
        out[tenant] = {"store": store["caStoreId"], "cert": cert["certId"], "name": cert["name"]}
    return out


def read_routes(w):
    """(id, method, path) of the VIEWER routes, for a store/cert of `w`."""
    s, c = w["store"], w["cert"]
    return [
        ("list-stores", "GET", ""),
        ("get-store", "GET", f"/{s}"),
        ("list-certs", "GET", f"/{s}/certs"),
        ("get-cert", "GET", f"/{s}/certs/{c}"),
        ("download", "GET", f"/{s}/certs/{c}/download"),
    ]


def write_routes(w):
    """(id, method, path, body) of the ADMIN routes. Each body is valid, so a wrongly allowed call
    would succeed (and be caught by the state checks)."""
    s, c = w["store"], w["cert"]
    return [
        ("create-store", "POST", "", {"name": unique("denied")}),
        ("put-store", "PUT", f"/{s}", {"name": unique("denied-rename")}),
        ("delete-store", "DELETE", f"/{s}", None),
        ("create-cert", "POST", f"/{s}/certs",
         issuer_body(kind="INTERMEDIATE", parent=c, max_depth=0, ttl=86400)),
    ]


def send(api, method, path, body):
    return api.call(method, path, json_body=body)


def assert_untouched(pcad, world):
    """What the denied writes would have changed is unchanged."""
    for tenant, w in world.items():
        api = Api(pcad, "admin", tenant)
        store = ok(api.get(f"/{w['store']}"))
        assert store["name"].startswith(f"roles-{tenant}"), store
        assert api.cert_count(w["store"]) == 1
        names = [s["name"] for s in ok(api.get("", params={"size": 1000}))["items"]]
        assert not [n for n in names if n.startswith("denied")], names


@pytest.mark.parametrize("edition", EDITIONS)
def test_no_client_certificate_is_401(pcad, world, edition):
    api = Api(pcad, None, TENANT_A, edition)
    w = world[TENANT_A]
    for _, method, path in read_routes(w):
        fails(api.call(method, path), 401, 40100)
    for _, method, path, body in write_routes(w):
        fails(send(api, method, path, body), 401, 40100)
    # Authentication comes before lookup: unknown ids are 401 too.
    fails(api.get("/999999999"), 401, 40100)
    assert_untouched(pcad, world)


def test_untrusted_client_certificate_is_refused(pcad):
    """A certificate from another CA claiming CN=pcad-admin: the TLS handshake fails or 401."""
    api = Api(pcad, pcad.client_cert("rogue-admin"), TENANT_A)
    try:
        reply = api.get("")
    except requests.exceptions.ConnectionError:  # SSLError is a ConnectionError
        return
    fails(reply, 401, 40100)


def test_client_certificate_without_client_auth_is_refused(pcad):
    """A certificate from the right CA for CN=pcad-admin but with EKU serverAuth only."""
    api = Api(pcad, pcad.client_cert("server-eku-admin"), TENANT_A)
    try:
        reply = api.get("")
    except requests.exceptions.ConnectionError:
        return
    fails(reply, 401, 40100)


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("identity", ["viewer", "tenant-a-viewer"])
def test_viewer_reads_but_cannot_write(pcad, world, edition, identity):
    api = Api(pcad, identity, TENANT_A, edition)
    w = world[TENANT_A]
    for route, method, path in read_routes(w):
        reply = api.call(method, path)
        assert reply.status == 200, (route, reply)
        if route != "download":
            ok(reply)
    for route, method, path, body in write_routes(w):
        fails(send(api, method, path, body), 403, 40300)
    assert_untouched(pcad, world)


@pytest.mark.parametrize("edition", EDITIONS)
def test_identity_without_role_is_403(pcad, world, edition):
    api = Api(pcad, "norole", TENANT_A, edition)
    w = world[TENANT_A]
    for _, method, path in read_routes(w):
        fails(api.call(method, path), 403, 40300)
    for _, method, path, body in write_routes(w):
        fails(send(api, method, path, body), 403, 40300)
    assert_untouched(pcad, world)


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("identity", ["tenant-a-admin", "tenant-a-viewer"])
def test_role_on_another_appkey_is_403(pcad, world, edition, identity):
    api = Api(pcad, identity, TENANT_B, edition)
    w = world[TENANT_B]
    for _, method, path in read_routes(w):
        fails(api.call(method, path), 403, 40300)
    for _, method, path, body in write_routes(w):
        fails(send(api, method, path, body), 403, 40300)
    assert_untouched(pcad, world)


@pytest.mark.parametrize("edition", EDITIONS)
def test_tenant_admin_does_everything_on_its_appkey(pcad, world, edition):
    api = Api(pcad, "tenant-a-admin", TENANT_A, edition)
    w = world[TENANT_A]
    for route, method, path in read_routes(w):
        assert api.call(method, path).status == 200, route
    store = api.create_store(unique("tenant-a-own"))
    sid = store["caStoreId"]
    ok(api.put(f"/{sid}", {"name": store["name"], "crlActive": True}))
    root = api.create_issuer(sid, issuer_body(max_depth=0))
    assert ok(api.get(f"/{sid}/certs/{root['certId']}"))["certId"] == root["certId"]
    ok(api.delete(f"/{sid}"))
    fails(api.get(f"/{sid}"), 404, 40400)


@pytest.mark.parametrize("edition", EDITIONS)
def test_ids_of_another_tenant_are_404(pcad, world, edition):
    """The global admin asks tenant-b's appkey for tenant-a's ids: 404, never 403."""
    api = Api(pcad, "admin", TENANT_B, edition)
    a, b = world[TENANT_A], world[TENANT_B]
    fails(api.get(f"/{a['store']}"), 404, 40400)
    fails(api.get(f"/{a['store']}/certs"), 404, 40400)
    fails(api.get(f"/{a['store']}/certs/{a['cert']}"), 404, 40400)
    fails(api.get(f"/{a['store']}/certs/{a['cert']}/download"), 404, 40400)
    fails(api.put(f"/{a['store']}", {"name": unique("denied-cross")}), 404, 40400)
    fails(api.delete(f"/{a['store']}"), 404, 40400)
    fails(api.post(f"/{a['store']}/certs", issuer_body()), 404, 40400)
    # tenant-a's certificate under tenant-b's own store is no such certificate either.
    fails(api.get(f"/{b['store']}/certs/{a['cert']}"), 404, 40400)
    fails(api.get(f"/{b['store']}/certs/{a['cert']}/download"), 404, 40400)
    fails(api.post(f"/{b['store']}/certs", issuer_body(kind="INTERMEDIATE", parent=a["cert"],
                                                        max_depth=0, ttl=86400)),
          404, 40400)
    listed = {s["caStoreId"] for s in ok(api.get("", params={"size": 1000}))["items"]}
    assert a["store"] not in listed and b["store"] in listed
    assert_untouched(pcad, world)


def test_public_listener_serves_no_management_route(pcad, world):
    w = world[TENANT_A]
    base = f"{pcad.public_url}/v2.0/appkeys/{TENANT_A}"
    for edition in EDITIONS:
        for path in ("", f"/{w['store']}", f"/{w['store']}/certs/{w['cert']}",
                     f"/{w['store']}/certs/{w['cert']}/download"):
            assert requests.get(f"{base}/{edition}{path}", timeout=10).status_code == 404, path
        reply = requests.post(f"{base}/{edition}", json={"name": unique("denied-public")},
                              timeout=10)
        assert reply.status_code == 404
    assert requests.get(f"{pcad.public_url}/healthz", timeout=10).status_code == 200
    assert_untouched(pcad, world)
