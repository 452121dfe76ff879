"""Issue 15: revocation status beyond one machine. A private appliance publishes every OCSP
response and CRL to a real `redis-server` started here; two `pcad responder` processes serve
the public routes from it. Byte-identical answers, revoke propagation (measured), unknown and
corrupt entries, and the faults: appliance kill -9, Redis stopped / emptied / refusing writes,
and Redis Cluster of three primaries. The NAVER Cloud edition's `/ext/{caTag}/ocsp` and `/crl`
too: a CA made through /api/v1, byte-identical answers, its caTag republished and removed.

The tests of this module run in order and share one appliance and one Redis."""

import base64
import re
import secrets
import time
import urllib.parse

import pytest
import requests
from cryptography.hazmat.primitives import hashes

from ncp_client import Ncp
from pcadtest import Api, ok, unique
from revocation_helpers import build_chain
from scaleout_helpers import (
    Redis, Responder, cert_status, ocsp_request, percentile, post, private_appliance,
    set_publish, start_cluster, tls_redis, wait_until,
)

EDITIONS = ["ca-stores", "cas"]


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = Redis(tmp_path_factory.mktemp("redis")).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory, redis):
    env = private_appliance(tmp_path_factory, "scaleout", redis.url)
    yield env
    if env.daemon.running:
        env.daemon.stop()


@pytest.fixture(scope="module")
def pki(appliance, tmp_path_factory):
    appkey = f"scaleout-{secrets.token_hex(3)}"
    admin = Api(appliance, "admin", appkey)
    store = admin.create_store(unique("scaleout"), crlActive=True, crlRefreshPeriod=7,
                               ocspActive=True, ocspRefreshPeriod=1)
    chain = build_chain(admin, store["caStoreId"], tmp_path_factory.mktemp("scaleout-pki"))
    leaves = [chain.issue() for _ in range(24)]
    return {"appkey": appkey, "admin": admin, "sid": store["caStoreId"], "chain": chain,
            "leaves": leaves, "store": store}


@pytest.fixture(scope="module")
def responders(tmp_path_factory, redis, appliance):
    d = tmp_path_factory.mktemp("responders")
    rs = [Responder(d, redis.url).start() for _ in range(2)]
    yield rs
    for r in rs:
        r.stop()


def path(pki, rest, edition="ca-stores"):
    return f"/v2.0/appkeys/{pki['appkey']}/{edition}/{pki['sid']}{rest}"


def max_age(resp):
    m = re.search(r"max-age=(\d+)", resp.headers.get("cache-control", ""))
    return int(m.group(1)) if m else None


def assert_same(a, b, what):
    """Status, body and headers byte for byte (max-age may differ by the seconds between)."""
    assert a.status_code == b.status_code, (what, a.status_code, b.status_code, b.content)
    assert a.content == b.content, what
    for h in ["content-type", "etag", "last-modified", "expires", "content-disposition"]:
        assert a.headers.get(h) == b.headers.get(h), (what, h, a.headers.get(h),
                                                       b.headers.get(h))
    ca, cb = a.headers.get("cache-control"), b.headers.get("cache-control")
    assert re.sub(r"max-age=\d+", "", ca or "") == re.sub(r"max-age=\d+", "", cb or ""), what
    if max_age(a) is not None:
        assert abs(max_age(a) - max_age(b)) <= 3, (what, ca, cb)


def tlv_span(data, i):
    """(start of content, end of TLV) of the DER element at `i`."""
    n = data[i + 1]
    if n < 0x80:
        return i + 2, i + 2 + n
    k = n & 0x7F
    length = int.from_bytes(data[i + 2:i + 2 + k], "big")
    return i + 2 + k, i + 2 + k + length


def first_tlv(data, depth):
    """The whole first element `depth` levels down (each level: the first child)."""
    i = 0
    for _ in range(depth):
        i, _ = tlv_span(data, i)
    return data[i:tlv_span(data, i)[1]]


def status_on(base, pki, leaf, algorithm=None):
    der = ocsp_request(leaf.cert, pki["chain"].int_cert, algorithm)
    r = post(base, path(pki, "/ocsp"), der)
    return cert_status(r.content)


def statuses(base, pki, leaves):
    return [status_on(base, pki, leaf) for leaf in leaves]


@pytest.fixture(scope="module")
def ncp_ca(appliance):
    """A NAVER Cloud root CA made through /api/v1, with one end certificate."""
    from cryptography import x509
    d = appliance.dir / "ncp"
    admin = Ncp(appliance, (d / "admin.access-key").read_text().strip(),
                (d / "admin.secret-key").read_text().strip())
    root = admin.create_ca(f"scaleout-{secrets.token_hex(3)}")
    t = root["caInfo"]["caTag"]
    leaf = admin.ok(admin.post(f"/api/v1/ca/{t}/cert", {
        "keyType": "EC256", "period": "90", "x509Parameters": {"commonName": "ext.example.com"}}))
    return {"admin": admin, "tag": t, "serial": leaf["serialNo"],
            "root": x509.load_pem_x509_certificate(root["caCertInfo"]["certPem"].encode()),
            "leaf": x509.load_pem_x509_certificate(leaf["certificate"].encode())}


def ext_answers(base, ncp_ca, tag=None):
    """POST and GET OCSP and the CRL at /ext/{caTag}."""
    t = tag or ncp_ca["tag"]
    der = ocsp_request(ncp_ca["leaf"], ncp_ca["root"])
    get_tail = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    return [post(base, f"/ext/{t}/ocsp", der),
            requests.get(f"{base}/ext/{t}/ocsp/{get_tail}", timeout=5),
            requests.get(f"{base}/ext/{t}/crl", timeout=5)]


def assert_ext_same(appliance, responders, ncp_ca, tag=None):
    want = ext_answers(appliance.public_url, ncp_ca, tag)
    for r in responders:
        for a, b, what in zip(want, ext_answers(r.base, ncp_ca, tag), ["POST", "GET", "CRL"]):
            assert_same(a, b, f"/ext {what} on {r.base}")
    return want


def health(appliance):
    return requests.get(f"{appliance.public_url}/healthz", timeout=5).json()


def test_responders_answer_byte_for_byte_as_the_appliance(appliance, pki, responders):
    chain, leaves = pki["chain"], pki["leaves"]
    chain.revoke(leaves[0].cert_id)
    wait_until(lambda: status_on(responders[0].base, pki, leaves[0]) == "revoked", 5,
               "first revoke on a responder")
    a = appliance.public_url
    checked = 0
    for leaf in leaves[:3]:
        for alg in [hashes.SHA1(), hashes.SHA256()]:
            der = ocsp_request(leaf.cert, chain.int_cert, alg)
            get_tail = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
            for edition in EDITIONS:
                want = post(a, path(pki, "/ocsp", edition), der)
                assert want.status_code == 200 and cert_status(want.content) in ("good",
                                                                                   "revoked")
                want_get = requests.get(f"{a}{path(pki, '/ocsp/' + get_tail, edition)}",
                                        timeout=5)
                for r in responders:
                    got = post(r.base, path(pki, "/ocsp", edition), der)
                    assert_same(want, got, f"POST {edition} {leaf.serial}")
                    got = requests.get(f"{r.base}{path(pki, '/ocsp/' + get_tail, edition)}",
                                       timeout=5)
                    assert_same(want_get, got, f"GET {edition} {leaf.serial}")
                    # RFC 5019: a matching If-None-Match is a 304.
                    h = {"If-None-Match": want.headers["etag"]}
                    w304 = requests.get(f"{a}{path(pki, '/ocsp/' + get_tail, edition)}",
                                        headers=h, timeout=5)
                    g304 = requests.get(f"{r.base}{path(pki, '/ocsp/' + get_tail, edition)}",
                                        headers=h, timeout=5)
                    assert w304.status_code == 304
                    assert_same(w304, g304, "304")
                    checked += 1
    assert cert_status(post(responders[0].base, path(pki, "/ocsp"),
                            ocsp_request(leaves[0].cert, chain.int_cert)).content) == "revoked"
    # CRLs, DER and PEM, of both issuers, both editions.
    for issuer in [chain.int["certId"], chain.root["certId"]]:
        for form in ["der", "pem"]:
            for edition in EDITIONS:
                p = path(pki, f"/certs/{issuer}/crl/{form}", edition)
                want = requests.get(f"{a}{p}", timeout=5)
                assert want.status_code == 200, want.content
                for r in responders:
                    assert_same(want, requests.get(f"{r.base}{p}", timeout=5), p)
                    checked += 1
    # Errors: malformed request, a route the public listener does not serve, a bad id.
    for p, body in [(path(pki, "/ocsp"), b"\x30\x03garbage")]:
        want = post(a, p, body)
        assert want.content == bytes.fromhex("30030a0101")
        for r in responders:
            assert_same(want, post(r.base, p, body), "malformedRequest")
    for p in [path(pki, "/certs"), path(pki, "/certs/x/crl/der"), "/nope"]:
        want = requests.get(f"{a}{p}", timeout=5)
        assert want.status_code in (400, 404)
        for r in responders:
            assert_same(want, requests.get(f"{r.base}{p}", timeout=5), p)
    print(f"\n{checked} answers byte-identical on two responders")


def test_unknown_is_unauthorized_and_tenants_stay_apart(appliance, pki, responders):
    chain = pki["chain"]
    other = chain.issue()
    fake = ocsp_request(other.cert, chain.int_cert)
    # A serial the appliance never signed for: flip the last serial byte in the CertID.
    fake = fake[:-1] + bytes([fake[-1] ^ 0x55])
    want = post(appliance.public_url, path(pki, "/ocsp"), fake)
    assert cert_status(want.content) == "unauthorized"
    real = ocsp_request(pki["leaves"][1].cert, chain.int_cert)
    for r in responders:
        assert_same(want, post(r.base, path(pki, "/ocsp"), fake), "unknown")
        # The right CertID under another appkey finds nothing.
        p = f"/v2.0/appkeys/someone-else/ca-stores/{pki['sid']}/ocsp"
        assert cert_status(post(r.base, p, real).content) == "unauthorized"
        assert requests.get(
            f"{r.base}/v2.0/appkeys/someone-else/ca-stores/{pki['sid']}/certs/"
            f"{chain.int['certId']}/crl/der", timeout=5).status_code == 404


def test_revoke_reaches_both_responders_fast(appliance, pki, responders):
    chain, leaves = pki["chain"], pki["leaves"][2:22]
    for leaf in leaves:  # cached as good on both first: the change must invalidate them
        for r in responders:
            assert status_on(r.base, pki, leaf) == "good"
    delays = []
    for leaf in leaves:
        chain.revoke(leaf.cert_id)
        t0 = time.monotonic()
        pending = list(responders)
        while pending:
            pending = [r for r in pending if status_on(r.base, pki, leaf) != "revoked"]
            assert time.monotonic() - t0 < 5, "revoke not visible on the responders in 5 s"
        delays.append(time.monotonic() - t0)
    p50, p99 = percentile(delays, 50) * 1000, percentile(delays, 99) * 1000
    print(f"\nrevoke -> revoked on both responders over {len(delays)} revokes: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(delays) * 1000:.1f} ms")
    assert p99 < 1000, delays
    # The new CRL reaches the responders within 2 s of the revoke answering.
    p = path(pki, f"/certs/{chain.int['certId']}/crl/der")
    t0 = time.monotonic()
    want = requests.get(f"{appliance.public_url}{p}", timeout=5).content
    for r in responders:
        wait_until(lambda r=r: requests.get(f"{r.base}{p}", timeout=5).content == want, 2,
                   "the appliance's current CRL on the responder")
    from cryptography import x509
    crl = x509.load_der_x509_crl(requests.get(f"{responders[0].base}{p}", timeout=5).content)
    listed = {e.serial_number for e in crl}
    assert all(int(leaf.serial, 16) in listed for leaf in leaves), "revoked serials on the CRL"
    assert time.monotonic() - t0 < 2


def test_ncp_ext_answers_byte_for_byte_from_redis(appliance, responders, redis, ncp_ca):
    t, admin = ncp_ca["tag"], ncp_ca["admin"]
    fields = redis.cli("HGETALL", f"pcad:ncp:{t}", raw=True).split()
    assert dict(zip(fields[::2], fields[1::2]))["appkey"] == "demo", fields
    # Good, then revoked through /api/v1: the same bytes from the appliance and both responders.
    for r in responders:
        wait_until(lambda r=r: status_of(r.base, ncp_ca) == "good", 5, "good on the responder")
    want = assert_ext_same(appliance, responders, ncp_ca)
    assert [a.status_code for a in want] == [200, 200, 200]
    assert cert_status(want[0].content) == "good"
    assert admin.ok(admin.post(f"/api/v1/ca/{t}/cert/{ncp_ca['serial']}/revoke")) is None
    for r in responders:
        wait_until(lambda r=r: status_of(r.base, ncp_ca) == "revoked", 5,
                   "revoked on the responder")
    crl_now = lambda: requests.get(f"{appliance.public_url}/ext/{t}/crl", timeout=5).content
    for r in responders:
        wait_until(lambda r=r: requests.get(f"{r.base}/ext/{t}/crl", timeout=5).content
                   == crl_now(), 5, "the revoked CRL on the responder")
    want = assert_ext_same(appliance, responders, ncp_ca)
    assert cert_status(want[1].content) == "revoked"
    from cryptography import x509
    crl = x509.load_der_x509_crl(want[2].content)
    assert crl.get_revoked_certificate_by_serial_number(ncp_ca["leaf"].serial_number)
    assert crl.is_signature_valid(ncp_ca["root"].public_key())
    # An unknown caTag: the appliance's answer (NOT_FOUND in the NCP envelope), byte for byte.
    want = assert_ext_same(appliance, responders, ncp_ca, tag="nosuchcatag")
    assert [a.status_code for a in want] == [404, 404, 404]
    assert want[0].json() == {"code": "NOT_FOUND", "msg": "The CA doesn't exist.", "data": None}


def status_of(base, ncp_ca):
    der = ocsp_request(ncp_ca["leaf"], ncp_ca["root"])
    return cert_status(post(base, f"/ext/{ncp_ca['tag']}/ocsp", der).content)


def test_corrupt_value_is_ignored_and_logged(pki, responders, redis):
    chain = pki["chain"]
    leaf = chain.issue()
    # A CertID form the appliance has not been asked for (SHA-512): not in Redis yet.
    der = ocsp_request(leaf.cert, chain.int_cert, hashes.SHA512())
    from cryptography.x509 import ocsp as x509_ocsp
    cert_id = x509_ocsp.load_der_ocsp_request(der)
    assert cert_id.serial_number == leaf.cert.serial_number
    # The request's CertID DER is what the key is made of: OCSPRequest > tbsRequest >
    # requestList > Request > CertID.
    key = f"pcad:ocsp:{pki['sid']}:{first_tlv(der, 4).hex()}"
    redis.cli("HSET", key, "der", "not DER at all", "this", int(time.time()), "next",
              int(time.time()) + 3600)
    for r in responders:
        assert cert_status(post(r.base, path(pki, "/ocsp"), der).content) == "unauthorized"
        assert "corrupt" in r.log_text() and key in r.log_text()
        assert r.health()[1]["corruptValues"] >= 1
    redis.cli("DEL", key)


def test_refresh_forgets_forms_it_does_not_resign(appliance, pki, responders, redis):
    """A SHA-256 CertID answer (signed on demand, published) leaves Redis when a refresh
    replaces the store's responses, so no responder serves it after a later revoke."""
    chain, admin, sid = pki["chain"], pki["admin"], pki["sid"]
    leaf = chain.issue()
    der = ocsp_request(leaf.cert, chain.int_cert, hashes.SHA256())
    key = f"pcad:ocsp:{sid}:{first_tlv(der, 4).hex()}"
    assert cert_status(post(appliance.public_url, path(pki, "/ocsp"), der).content) == "good"
    wait_until(lambda: redis.cli("EXISTS", key, raw=True).strip() == "1", 5, "SHA-256 form")
    for r in responders:
        assert status_on(r.base, pki, leaf, hashes.SHA256()) == "good"
    ok(admin.put(f"/{sid}", {"name": pki["store"]["name"], "ocspActive": True,
                             "ocspRefreshPeriod": 2, "crlActive": True,
                             "crlRefreshPeriod": 7}))
    wait_until(lambda: redis.cli("EXISTS", key, raw=True).strip() == "0", 20,
               "the SHA-256 form gone from Redis after the refresh")
    chain.revoke(leaf.cert_id)
    for r in responders:
        assert status_on(r.base, pki, leaf) == "revoked"
        assert status_on(r.base, pki, leaf, hashes.SHA256()) != "good"


def test_ocsp_turned_off_is_not_served(appliance, pki, responders, redis, tmp_path_factory):
    admin = pki["admin"]
    name = unique("scaleout-off")
    store = admin.create_store(name, crlActive=True, crlRefreshPeriod=7, ocspActive=True,
                               ocspRefreshPeriod=1)
    sid = store["caStoreId"]
    chain = build_chain(admin, sid, tmp_path_factory.mktemp("scaleout-off"))
    leaf = chain.issue()
    der = ocsp_request(leaf.cert, chain.int_cert)
    p = f"/v2.0/appkeys/{pki['appkey']}/ca-stores/{sid}/ocsp"
    for r in responders:
        wait_until(lambda r=r: cert_status(post(r.base, p, der).content) == "good", 5, "good")
    ok(admin.put(f"/{sid}", {"name": name, "ocspActive": False, "crlActive": True,
                             "crlRefreshPeriod": 7}))
    want = post(appliance.public_url, p, der)
    assert cert_status(want.content) == "unauthorized"
    for r in responders:
        wait_until(lambda r=r: post(r.base, p, der).content == want.content, 5,
                   "unauthorized on the responder once OCSP is off")
    # A stale switch in Redis (say, turned off while publishing elsewhere) is corrected by the
    # republish every start makes.
    redis.cli("HSET", f"pcad:store:{sid}", "ocsp", "1")
    appliance.daemon.restart()
    wait_until(lambda: redis.cli("HGET", f"pcad:store:{sid}", "ocsp", raw=True).strip() == "0",
               15, "OCSP switch republished")
    for r in responders:
        wait_until(lambda r=r: post(r.base, p, der).content == want.content, 5,
                   "unauthorized after the republish")


def test_appliance_kill9_responders_keep_serving(appliance, pki, responders):
    leaves = pki["leaves"]
    before = statuses(responders[0].base, pki, leaves)
    assert "revoked" in before and "good" in before
    appliance.daemon.kill9()
    try:
        for r in responders:
            assert statuses(r.base, pki, leaves) == before
            assert r.health()[0] == 200
    finally:
        appliance.daemon.start()


def test_redis_stopped_then_back_empty(appliance, pki, responders, redis):
    chain, leaves = pki["chain"], pki["leaves"]
    before = statuses(responders[0].base, pki, leaves)
    redis.stop()
    for r in responders:
        wait_until(lambda r=r: r.health()[0] == 503, 10, "responder healthz 503")
        assert r.health()[1]["reason"]
        # Cached entries are still answered; what it cannot confirm is tryLater.
        assert statuses(r.base, pki, leaves) == before
        never = chain.issue()
        assert status_on(r.base, pki, never) == "try_later"
    # The appliance still revokes, and shows the backlog.
    victim = leaves[22]
    t0 = time.monotonic()
    chain.revoke(victim.cert_id)
    assert time.monotonic() - t0 < 5
    h = wait_until(lambda: (lambda h: h if h["publish"]["backlog"] > 0 else None)(
        health(appliance)), 10, "backlog in /healthz")
    assert h["publish"]["redis"] == "down"
    metrics = requests.get(f"http://127.0.0.1:{appliance.metrics_port}/metrics", timeout=5).text
    assert re.search(r"(?m)^pcad_publish_backlog [1-9]", metrics), metrics
    # Redis comes back empty (no persistence): everything republished, responders catch up.
    redis.start()
    t0 = time.monotonic()
    for r in responders:
        wait_until(lambda r=r: status_on(r.base, pki, victim) == "revoked", 30,
                   "revoke made while Redis was down on the responders")
        wait_until(lambda r=r: r.health()[0] == 200, 30, "responder healthy again")
    wait_until(lambda: health(appliance)["publish"]["backlog"] == 0, 30, "backlog drained")
    print(f"\nRedis back empty: revoked on responders after {time.monotonic() - t0:.1f} s")
    for r in responders:
        assert statuses(r.base, pki, leaves) == statuses(appliance.public_url, pki, leaves)


def test_flushall_everything_republished(appliance, pki, responders, redis):
    keys = int(redis.cli("DBSIZE", raw=True))
    assert keys > len(pki["leaves"])
    redis.cli("FLUSHALL")
    t0 = time.monotonic()
    wait_until(lambda: redis.cli("GET", "pcad:marker", raw=True).strip(), 30, "marker back")
    wait_until(lambda: int(redis.cli("DBSIZE", raw=True)) >= keys, 30, "keys back")
    took = time.monotonic() - t0
    print(f"\nFLUSHALL: {keys} keys republished in {took:.1f} s")
    assert took < 30
    want = statuses(appliance.public_url, pki, pki["leaves"])
    for r in responders:
        wait_until(lambda r=r: r.health()[0] == 200, 10, "responder healthy")
        assert statuses(r.base, pki, pki["leaves"]) == want


def test_ncp_ca_tag_republished_then_gone_with_the_ca(appliance, responders, redis, ncp_ca):
    t, admin = ncp_ca["tag"], ncp_ca["admin"]
    # The FLUSHALL above: the full republish brought the caTag back.
    wait_until(lambda: redis.cli("EXISTS", f"pcad:ncp:{t}", raw=True).strip() == "1", 30,
               "caTag republished")
    for r in responders:
        wait_until(lambda r=r: r.health()[0] == 200, 10, "responder healthy")
    assert_ext_same(appliance, responders, ncp_ca)
    # Destroyed: the key is deleted and the responders forget the tag at once.
    admin.ok(admin.put(f"/api/v1/ca/{t}", {"status": "DESTROYING"}))
    assert admin.ok(admin.delete(f"/api/v1/ca/{t}")) is None
    wait_until(lambda: redis.cli("EXISTS", f"pcad:ncp:{t}", raw=True).strip() == "0", 5,
               "caTag deleted from Redis")
    for r in responders:
        wait_until(lambda r=r: requests.get(f"{r.base}/ext/{t}/crl", timeout=5).status_code
                   == 404, 5, "destroyed CA forgotten by the responder")
    want = assert_ext_same(appliance, responders, ncp_ca)
    assert [a.status_code for a in want] == [404, 404, 404]


def test_redis_refusing_writes_never_fails_a_revoke(appliance, pki, responders, redis):
    chain = pki["chain"]
    victim = pki["leaves"][23]
    redis.cli("CONFIG", "SET", "maxmemory-policy", "noeviction")
    redis.cli("CONFIG", "SET", "maxmemory", "1")
    try:
        t0 = time.monotonic()
        chain.revoke(victim.cert_id)
        assert time.monotonic() - t0 < 5
        h = wait_until(lambda: (lambda h: h if h["publish"]["backlog"] > 0 and
                                h["publish"]["lastError"] else None)(health(appliance)),
                       10, "refused write reported")
        assert "OOM" in h["publish"]["lastError"] or "memory" in h["publish"]["lastError"]
        assert h["publish"]["failures"] > 0
    finally:
        redis.cli("CONFIG", "SET", "maxmemory", "0")
    wait_until(lambda: health(appliance)["publish"]["backlog"] == 0, 20, "backlog drained")
    for r in responders:
        wait_until(lambda r=r: status_on(r.base, pki, victim) == "revoked", 10, "revoked")


def test_redis_cluster_of_three_primaries(appliance, pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    nodes = start_cluster(d)
    r = None
    try:
        urls = [n.url for n in nodes]
        set_publish(appliance.config, urls)
        appliance.daemon.restart()
        wait_until(lambda: nodes[0].cli("GET", "pcad:marker", raw=True).strip(), 30,
                   "republished to the cluster")
        r = Responder(d, urls).start()
        chain, leaves = pki["chain"], pki["leaves"]
        a = appliance.public_url
        for leaf in leaves[:4] + leaves[22:]:
            der = ocsp_request(leaf.cert, chain.int_cert)
            for edition in EDITIONS:
                assert_same(post(a, path(pki, "/ocsp", edition), der),
                            post(r.base, path(pki, "/ocsp", edition), der), "cluster POST")
        for form in ["der", "pem"]:
            p = path(pki, f"/certs/{chain.int['certId']}/crl/{form}")
            assert_same(requests.get(f"{a}{p}", timeout=5),
                        requests.get(f"{r.base}{p}", timeout=5), p)
        # Keys are spread over the primaries.
        counts = [int(n.cli("DBSIZE", raw=True)) for n in nodes]
        assert sum(1 for c in counts if c > 0) >= 2, counts
        leaf = chain.issue()
        assert status_on(r.base, pki, leaf) == "good"
        chain.revoke(leaf.cert_id)
        t0 = time.monotonic()
        wait_until(lambda: status_on(r.base, pki, leaf) == "revoked", 5, "cluster revoke")
        print(f"\ncluster: revoke visible after {(time.monotonic() - t0) * 1000:.1f} ms; "
              f"keys per primary {counts}")
    finally:
        if r:
            r.stop()
        for n in nodes:
            n.stop()


def test_tls_redis_with_a_password_file(appliance, pki, tmp_path_factory, monkeypatch):
    """rediss:// (rustls) and the password from a file, for the publisher and a responder."""
    d = tmp_path_factory.mktemp("tls-redis")
    password = secrets.token_hex(16)
    pw_file = d / "redis-password"
    pw_file.write_text(password + "\n")
    pw_file.chmod(0o600)
    redis_tls, ca = tls_redis(d / "redis", password)
    r = None
    try:
        # rustls-native-certs trusts SSL_CERT_FILE: the test CA only.
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        set_publish(appliance.config, redis_tls.url, password_file=pw_file)
        appliance.daemon.restart()
        wait_until(lambda: redis_tls.cli("GET", "pcad:marker", raw=True).strip(), 30,
                   "republished over TLS")
        log = appliance.daemon.log_tail(400)
        assert password not in log
        r = Responder(d, redis_tls.url, extra_args=["--password-file", str(pw_file)],
                      env={"SSL_CERT_FILE": str(ca)}).start()
        assert password not in r.log_text()
        chain, leaves = pki["chain"], pki["leaves"]
        for leaf in leaves[:3] + leaves[22:]:
            der = ocsp_request(leaf.cert, chain.int_cert)
            assert_same(post(appliance.public_url, path(pki, "/ocsp"), der),
                        post(r.base, path(pki, "/ocsp"), der), "TLS POST")
        leaf = chain.issue()
        assert status_on(r.base, pki, leaf) == "good"
        chain.revoke(leaf.cert_id)
        wait_until(lambda: status_on(r.base, pki, leaf) == "revoked", 5, "TLS revoke")
        # Without the password the responder is refused and says so (503, never unauthorized).
        bad = Responder(d, redis_tls.url, env={"SSL_CERT_FILE": str(ca)}).start(
            wait_healthy=False)
        try:
            time.sleep(1.5)
            code, body = bad.health()
            assert code == 503 and body["redis"] == "down", body
            assert status_on(bad.base, pki, leaves[1]) == "try_later"
        finally:
            bad.stop()
    finally:
        if r:
            r.stop()
        redis_tls.stop()
