"""ACME account and order lifecycle against the real daemon: key rollover, deactivation, the
pending-order cap (`rateLimited`), a pending order that continues after a restart, and 50
concurrent orders from several accounts."""

import concurrent.futures
import time

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import pcadtest
from acme_helpers import Client, env, http01, problem  # noqa: F401 (fixtures)


def issue(c, http01, names):
    url, order = c.order(names)
    assert c.solve_http(order, http01) is None
    r, _ = c.finalize(order, names)
    assert r.status_code == 200 and r.json()["status"] == "valid", r.text
    pem = c.post(r.json()["certificate"], None)
    assert pem.status_code == 200, pem.text
    return x509.load_pem_x509_certificate(pcadtest.split_pems(pem.text)[0].encode())


def test_key_rollover(env, http01):
    c = Client(env)
    c.register(env.token())
    old_key = c.key
    new_key = ec.generate_private_key(ec.SECP256R1())
    url = c.dir["keyChange"]
    # The inner JWS must be signed by the new key and name the old one.
    wrong = Client.sign(new_key, {"alg": "ES256", "jwk": Client.jwk_of(new_key), "url": url},
                        {"account": c.kid, "oldKey": Client.jwk_of(new_key)})
    problem(c.post(url, wrong), "unauthorized", 403)
    inner = Client.sign(new_key, {"alg": "ES256", "jwk": Client.jwk_of(new_key), "url": url},
                        {"account": c.kid, "oldKey": c.jwk()})
    r = c.post(url, inner)
    assert r.status_code == 200, r.text
    c.key = new_key
    assert c.post(c.kid, None).status_code == 200
    stale = Client(env, key=old_key)
    stale.kid = c.kid
    problem(stale.post(c.kid, None), "malformed", 400)
    # newAccount with the new key finds the account; the old key finds none.
    r = c.post(c.dir["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert r.status_code == 200 and r.headers["Location"] == c.kid
    stale.kid = None
    problem(stale.post(stale.dir["newAccount"], {"onlyReturnExisting": True}, use_jwk=True),
            "accountDoesNotExist", 400)
    # A rolled-over key still obtains certificates.
    issue(c, http01, ["roll.apps.acme.test"])
    # Rolling over to a key that already belongs to another account: conflict.
    other = Client(env)
    other.register(env.token())
    inner = Client.sign(other.key, {"alg": "ES256", "jwk": other.jwk(), "url": url},
                        {"account": c.kid, "oldKey": c.jwk()})
    r = c.post(url, inner)
    problem(r, "conflict", 409)
    assert r.headers["Location"] == other.kid


def test_account_update_and_deactivation(env):
    c = Client(env)
    c.register(env.token())
    r = c.post(c.kid, {"contact": ["mailto:new@acme.test"]})
    assert r.status_code == 200 and r.json()["contact"] == ["mailto:new@acme.test"]
    problem(c.post(c.kid, {"contact": ["tel:+123"]}), "unsupportedContact", 400)
    r = c.post(c.kid, {"status": "deactivated"})
    assert r.status_code == 200 and r.json()["status"] == "deactivated"
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "www.acme.test"}]})
    problem(r, "unauthorized", 403)


def test_pending_orders_are_capped(env):
    c = Client(env)
    c.register(env.token())
    cap = 100
    for i in range(cap):
        r = c.post(c.dir["newOrder"],
                   {"identifiers": [{"type": "dns", "value": f"p{i}.apps.acme.test"}]})
        assert r.status_code == 201, (i, r.text)
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "www.acme.test"}]})
    problem(r, "rateLimited", 429)
    assert r.headers.get("Retry-After")
    # Deactivating an authorization makes its order invalid, which frees a place.
    orders = c.post(c.kid + "/orders", None).json()["orders"]
    first = c.post(orders[0], None).json()
    r = c.post(first["authorizations"][0], {"status": "deactivated"})
    assert r.status_code == 200 and r.json()["status"] == "deactivated"
    assert c.post(orders[0], None).json()["status"] == "invalid"
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "www.acme.test"}]})
    assert r.status_code == 201, r.text


def test_a_pending_order_continues_after_restart(env, http01):
    c = Client(env)
    c.register(env.token())
    url, order = c.order(["restart.apps.acme.test"])
    env.pcad.daemon.restart()
    c.nonce = None
    assert c.post(url, None).json()["status"] == "pending"
    assert c.solve_http(order, http01) is None
    r, _ = c.finalize(order, ["restart.apps.acme.test"])
    assert r.status_code == 200 and r.json()["status"] == "valid", r.text
    env.pcad.daemon.restart()
    c.nonce = None
    assert c.post(url, None).json()["status"] == "valid"
    assert c.post(r.json()["certificate"], None).status_code == 200


def test_fifty_concurrent_orders_from_several_accounts(env, http01):
    accounts = []
    for _ in range(5):
        c = Client(env)
        c.register(env.token())
        accounts.append(c)

    def one(i):
        owner = accounts[i % len(accounts)]
        c = Client(env, key=owner.key)
        c.kid = owner.kid
        name = f"conc{i}.apps.acme.test"
        cert = issue(c, http01, [name])
        return name, cert

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    elapsed = time.monotonic() - started
    assert len(results) == 50
    for name, cert in results:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [name]
    assert len({cert.serial_number for _, cert in results}) == 50
    print(f"50 concurrent orders in {elapsed:.1f}s")
