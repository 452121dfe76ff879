"""ACME (RFC 8555) against the real daemon on SoftHSM: certbot (Debian package) over http-01
with EAB, `certbot revoke`, and the refusals of a raw client (JWS made here)."""

import base64
import json
import os
import subprocess
import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

import pcadtest
from acme_helpers import ERR, Client, b64, env, http01, problem  # noqa: F401 (fixtures)
from pcadtest import ok


def ocsp_status(env, leaf_pem, issuer_pem, workdir):
    leaf, issuer = workdir / "ocsp-leaf.pem", workdir / "ocsp-issuer.pem"
    leaf.write_text(leaf_pem)
    issuer.write_text(issuer_pem)
    url = x509.load_pem_x509_certificate(leaf_pem.encode()).extensions.get_extension_for_oid(
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value[0].access_location.value
    out = pcadtest.run(["openssl", "ocsp", "-issuer", issuer, "-cert", leaf, "-url", url,
                        "-noverify", "-timeout", "20"]).stdout
    return out.split(f"{leaf}: ", 1)[1].split()[0].strip()


def audit_events(env):
    r = requests.get(f"{env.pcad.api_url}/v2.0/appkeys/{env.admin.appkey}/audit-events",
                     params={"size": 500}, cert=env.admin.client, verify=env.pcad.ca_pem,
                     timeout=30)
    return ok(pcadtest.Reply(r))["items"]


def test_directory_and_nonces(env):
    r = requests.get(env.directory(), verify=env.pcad.ca_pem, timeout=30)
    assert r.status_code == 200, r.text
    d = r.json()
    base = env.directory().rsplit("/", 1)[0]
    for k, path in [("newNonce", "new-nonce"), ("newAccount", "new-account"),
                    ("newOrder", "new-order"), ("revokeCert", "revoke-cert"),
                    ("keyChange", "key-change")]:
        assert d[k] == f"{base}/{path}"
    assert d["meta"]["externalAccountRequired"] is True
    assert r.headers.get("Replay-Nonce")
    head = requests.head(d["newNonce"], verify=env.pcad.ca_pem, timeout=30)
    get = requests.get(d["newNonce"], verify=env.pcad.ca_pem, timeout=30)
    assert (head.status_code, get.status_code) == (200, 204)
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert "no-store" in head.headers["Cache-Control"]
    assert 'rel="index"' in head.headers["Link"]
    # A certificate that is not a stored leaf has no directory; the answer still has a nonce.
    for cid in (env.root["certId"], 987654321):
        r = requests.get(env.directory(cid), verify=env.pcad.ca_pem, timeout=30)
        problem(r, "malformed", 404)


def test_token_routes_in_both_editions(env):
    t1 = env.token(name="one")
    t2 = env.token(name="two", edition="cas")
    assert len(base64.urlsafe_b64decode(t1["hmacKey"] + "=")) == 32
    assert "=" not in t1["hmacKey"]
    for edition in ("ca-stores", "cas"):
        api = env.admin.with_(edition=edition)
        items = ok(api.get(f"/{env.sid}/certs/{env.base['certId']}/acme-tokens"))["items"]
        ids = {i["tokenId"] for i in items}
        assert {t1["tokenId"], t2["tokenId"]} <= ids
        assert all("hmacKey" not in i for i in items)
    # VIEWER reads, only ADMIN creates and deletes.
    viewer = env.admin.as_("viewer")
    assert viewer.get(f"/{env.sid}/certs/{env.base['certId']}/acme-tokens").status == 200
    assert viewer.post(f"/{env.sid}/certs/{env.base['certId']}/acme-tokens", {}).status == 403
    assert ok(env.admin.with_(edition="cas").delete(
        f"/{env.sid}/certs/{env.base['certId']}/acme-tokens/{t2['tokenId']}")) is True
    items = ok(env.admin.get(f"/{env.sid}/certs/{env.base['certId']}/acme-tokens"))["items"]
    assert t2["tokenId"] not in {i["tokenId"] for i in items}
    # Issuers have no directory, so no tokens.
    r = env.admin.post(f"/{env.sid}/certs/{env.inter['certId']}/acme-tokens", {})
    assert r.status == 404


def test_certbot_certonly_and_revoke(env, tmp_path):
    token = env.token(name="certbot")
    names = ["www.acme.test", "web1.apps.acme.test"]
    dirs = ["--config-dir", tmp_path / "conf", "--work-dir", tmp_path / "work",
            "--logs-dir", tmp_path / "logs"]
    cb_env = dict(os.environ, REQUESTS_CA_BUNDLE=env.pcad.ca_pem)
    args = ["certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos",
            "-m", "ops@acme.test", "--server", env.directory(),
            "--eab-kid", token["tokenId"], "--eab-hmac-key", token["hmacKey"],
            "--http-01-port", str(env.http_port), "--http-01-address", "127.0.0.1",
            "--key-type", "ecdsa", "--elliptic-curve", "secp256r1",
            "--cert-name", "acme-test", *dirs]
    for n in names:
        args += ["-d", n]
    pcadtest.run(args, env=cb_env, timeout=400)
    live = tmp_path / "conf" / "live" / "acme-test"
    cert_pem = (live / "cert.pem").read_text()
    chain_pem = (live / "chain.pem").read_text()
    cert = x509.load_pem_x509_certificate(cert_pem.encode())

    # Exactly the ordered names, the template's profile, a valid chain, pkilint clean.
    sans = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    assert sans.get_values_for_type(x509.IPAddress) == []
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == names[0]
    eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 31
    pcadtest.openssl_verify(cert_pem, env.root["certificatePem"], [chain_pem])
    assert pcadtest.split_pems(chain_pem)[0].strip() == env.inter["certificatePem"].strip()
    assert pcadtest.pkilint_findings(cert_pem) == []

    # A leaf of the base certificate's store, with its template and issuer; audited as acme:<id>.
    serial = format(cert.serial_number, "x")
    leaves = ok(env.admin.get(f"/{env.sid}/certs", params={"type": "leaf", "size": 100}))
    leaf = next(c for c in leaves["items"] if int(c["serialNumber"], 16) == cert.serial_number)
    detail = env.admin.cert(env.sid, leaf["certId"])
    assert detail["templateId"] == env.template["templateId"]
    assert detail["parentCertId"] == env.inter["certId"]
    events = audit_events(env)
    issue = [e for e in events if e["action"] == "LEAF_ISSUE"
             and (e.get("serialNumber") or "").lstrip("0") == serial]
    assert issue and issue[0]["identity"].startswith("acme:"), events[:5]

    # OCSP good; certbot revoke (account key) with a reason; OCSP revoked.
    assert ocsp_status(env, cert_pem, chain_pem, tmp_path) == "good"
    pcadtest.run(["certbot", "revoke", "--non-interactive", "--server", env.directory(),
                  "--cert-path", live / "cert.pem", "--reason", "superseded",
                  "--no-delete-after-revoke", *dirs], env=cb_env, timeout=400)
    assert ocsp_status(env, cert_pem, chain_pem, tmp_path) == "revoked"
    detail = env.admin.cert(env.sid, leaf["certId"])
    assert detail["status"] == "REVOKED" or detail.get("revocationReason") is not None, detail

    # certbot renew (forced): a new order with the same account and names.
    pcadtest.run(["certbot", "renew", "--non-interactive", "--force-renewal",
                  "--no-random-sleep-on-renew",
                  "--cert-name", "acme-test", *dirs], env=cb_env, timeout=400)
    renewed_pem = (live / "cert.pem").read_text()
    renewed = x509.load_pem_x509_certificate(renewed_pem.encode())
    assert renewed.serial_number != cert.serial_number
    sans = renewed.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    pcadtest.openssl_verify(renewed_pem, env.root["certificatePem"], [chain_pem])
    assert ocsp_status(env, renewed_pem, chain_pem, tmp_path) == "good"


def test_refusals_of_a_raw_client(env, http01):
    c = Client(env)
    # No EAB.
    r = c.post(c.dir["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True)
    problem(r, "externalAccountRequired", 400)
    # A deleted token.
    gone = env.token()
    ok(env.admin.delete(f"/{env.sid}/certs/{env.base['certId']}/acme-tokens/{gone['tokenId']}"))
    r = c.post(c.dir["newAccount"], {"externalAccountBinding": c.eab(gone)}, use_jwk=True)
    problem(r, "unauthorized", 403)
    # A wrong HMAC key.
    tok = env.token()
    bad = dict(tok, hmacKey=b64(os.urandom(32)))
    r = c.post(c.dir["newAccount"], {"externalAccountBinding": c.eab(bad)}, use_jwk=True)
    problem(r, "unauthorized", 403)
    # Wrong Content-Type, url not the request URL, both jwk and kid, unsupported alg.
    body = c.jws(c.dir["newAccount"], {}, use_jwk=True)
    problem(c.post_raw(c.dir["newAccount"], body, content_type="application/json"),
            "malformed", 415)
    problem(c.post(c.dir["newAccount"], {}, use_jwk=True, extra={"url": c.dir["newOrder"]}),
            "unauthorized", 403)
    problem(c.post(c.dir["newAccount"], {}, use_jwk=True, extra={"kid": "x"}), "malformed", 400)
    problem(c.post(c.dir["newAccount"], {}, use_jwk=True, extra={"alg": "HS256"}),
            "badSignatureAlgorithm", 400)
    problem(c.post(c.dir["newAccount"], {}, use_jwk=True, extra={"b64": False}), "malformed", 400)
    # Two signatures (general JWS form) and unprotected headers are refused.
    body = c.jws(c.dir["newAccount"], {}, use_jwk=True)
    general = {"payload": body["payload"], "signatures": [
        {"protected": body["protected"], "signature": body["signature"]}] * 2}
    problem(c.post_raw(c.dir["newAccount"], general), "malformed", 400)
    problem(c.post_raw(c.dir["newAccount"], dict(c.jws(c.dir["newAccount"], {}, use_jwk=True),
                                                   header={"kid": "x"})), "malformed", 400)
    # A signature by another key than the jwk.
    forged = c.jws(c.dir["newAccount"], {}, use_jwk=True)
    forged["signature"] = c.jws(c.dir["newAccount"], {"x": 1}, use_jwk=True)["signature"]
    problem(c.post_raw(c.dir["newAccount"], forged), "malformed", 400)
    # A good account; the token then binds no second one.
    c.register(tok)
    other = Client(env)
    r = other.post(other.dir["newAccount"], {"externalAccountBinding": other.eab(tok)},
                   use_jwk=True)
    problem(r, "unauthorized", 403)
    # The same key again: the same account (200).
    r = c.post(c.dir["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert r.status_code == 200 and r.headers["Location"] == c.kid
    # A reused nonce: badNonce, with a fresh nonce to retry with.
    nonce = c.new_nonce()
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "www.acme.test"}]},
               nonce=nonce)
    assert r.status_code == 201, r.text
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "www.acme.test"}]},
               nonce=nonce)
    problem(r, "badNonce", 400)
    # Foreign names: not in the base certificate, two labels under its wildcard.
    for name in ["evil.example.com", "a.b.apps.acme.test", "acme.test"]:
        r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": name}]})
        problem(r, "rejectedIdentifier", 400)
    # A wildcard may be ordered, with dns-01 only.
    url, order = c.order(["*.apps.acme.test"])
    authz = c.post(order["authorizations"][0], None).json()
    assert authz["wildcard"] is True and authz["identifier"]["value"] == "apps.acme.test"
    assert [ch["type"] for ch in authz["challenges"]] == ["dns-01"]

    # Finalize before validation: orderNotReady. A CSR with other names: badCSR.
    url, order = c.order(["api.acme.test"])
    r, _ = c.finalize(order, ["api.acme.test"])
    problem(r, "orderNotReady", 403)
    assert c.solve_http(order, http01) is None
    r, _ = c.finalize(order, ["api.acme.test", "www.acme.test"])
    problem(r, "badCSR", 400)
    r, _ = c.finalize(order, ["other.acme.test"])
    problem(r, "badCSR", 400)
    # A key the template forbids (P-384 for an EC-256 template): badCSR.
    r, _ = c.finalize(order, ["api.acme.test"], key=ec.generate_private_key(ec.SECP384R1()))
    problem(r, "badCSR", 400)
    # The order is still ready: a fitting CSR is issued.
    r, key = c.finalize(order, ["api.acme.test"])
    assert r.status_code == 200 and r.json()["status"] == "valid", r.text
    cert_url = r.json()["certificate"]
    pem = c.post(cert_url, None)
    assert pem.headers["Content-Type"] == "application/pem-certificate-chain"
    leaf_pem = pcadtest.split_pems(pem.text)[0]
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    # Another account may not fetch it, nor revoke it.
    intruder = Client(env)
    intruder.register(env.token())
    problem(intruder.post(cert_url, None), "unauthorized", 403)
    der = leaf.public_bytes(serialization.Encoding.DER)
    problem(intruder.post(intruder.dir["revokeCert"], {"certificate": b64(der)}),
            "unauthorized", 403)
    # Revoked by the certificate's own key (jwk), reason keyCompromise; then alreadyRevoked.
    keyholder = Client(env, key=key)
    r = keyholder.post(keyholder.dir["revokeCert"], {"certificate": b64(der), "reason": 1},
                       use_jwk=True)
    assert r.status_code == 200, r.text
    assert ocsp_status(env, leaf_pem, env.inter["certificatePem"], env.dir) == "revoked"
    problem(c.post(c.dir["revokeCert"], {"certificate": b64(der)}), "alreadyRevoked", 400)


def test_failed_http01_invalidates_the_order(env, http01):
    c = Client(env)
    c.register(env.token())
    order_url, order = c.order(["bad.apps.acme.test"])
    authz = c.post(order["authorizations"][0], None).json()
    ch = next(x for x in authz["challenges"] if x["type"] == "http-01")
    http01.answers[ch["token"]] = "not-the-key-authorization"
    assert c.post(ch["url"], {}).status_code == 200
    authz = c.wait_authz(order)
    assert authz["status"] == "invalid"
    assert authz["challenges"][0]["error"]["type"] == ERR + "incorrectResponse"
    o = c.post(order_url, None).json()
    assert o["status"] == "invalid" and o["error"]["type"] == ERR + "incorrectResponse"


def test_deleted_token_deactivates_its_account(env):
    c = Client(env)
    tok = env.token()
    c.register(tok)
    ok(env.admin.delete(f"/{env.sid}/certs/{env.base['certId']}/acme-tokens/{tok['tokenId']}"))
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "www.acme.test"}]})
    problem(r, "unauthorized", 403)


def test_huge_and_slow_http01_answers_fail_bounded(env, http01):
    c = Client(env)
    c.register(env.token())
    for name, answer, budget in [("huge.apps.acme.test", ("huge", 1 << 20), 8),
                                 ("slow.apps.acme.test", ("slow", 15, ""), 14)]:
        _, order = c.order([name])
        authz = c.post(order["authorizations"][0], None).json()
        ch = next(x for x in authz["challenges"] if x["type"] == "http-01")
        if answer[0] == "slow":
            answer = ("slow", 15, c.key_authorization(ch["token"]))
        http01.answers[ch["token"]] = answer
        started = time.monotonic()
        assert c.post(ch["url"], {}).status_code == 200
        authz = c.wait_authz(order, timeout=30)
        assert time.monotonic() - started < budget
        assert authz["status"] == "invalid"
        assert authz["challenges"][0]["error"]["type"] == ERR + "connection", authz


def test_unknown_account_and_get_with_payload(env):
    c = Client(env)
    c.register(env.token())
    url, _ = c.order(["www.acme.test"])
    problem(c.post(url, {"x": 1}), "malformed", 400)
    stranger = Client(env)
    stranger.kid = c.kid.rsplit("/", 1)[0] + "/999999999"
    problem(stranger.post(stranger.dir["newOrder"], {"identifiers": []}),
            "accountDoesNotExist", 400)


def test_a_revoked_base_certificate_closes_its_directory(env):
    base = env.issue_base("closing.acme.test", [])
    c = Client(env, cert_id=base["certId"])
    c.register(env.token(cert_id=base["certId"]))
    ok(env.admin.post(f"/{env.sid}/certs/{base['certId']}/revoke", {"reason": "SUPERSEDED"}))
    r = requests.get(env.directory(base["certId"]), verify=env.pcad.ca_pem, timeout=30)
    assert r.status_code == 200
    r = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "closing.acme.test"}]})
    problem(r, "unauthorized", 403)


def test_a_flood_of_new_accounts_is_rate_limited(env):
    base = env.issue_base("flood.acme.test", [])
    c = Client(env, cert_id=base["certId"])
    body = c.jws(c.dir["newAccount"], {"termsOfServiceAgreed": True}, use_jwk=True)
    kinds = []
    for _ in range(150):
        r = c.post_raw(c.dir["newAccount"], body)
        assert r.headers.get("Replay-Nonce")
        kinds.append(r.json()["type"].rsplit(":", 1)[1])
    assert kinds.count("rateLimited") >= 50, kinds
    assert kinds[0] == "externalAccountRequired" and kinds[1] == "badNonce", kinds[:3]
    # Other directories are not affected.
    other = Client(env)
    other.register(env.token())


def test_unroutable_acme_paths_still_carry_a_nonce(env):
    for path in ["/acme/v2.0/cert/abc/directory", "/acme/v2.0/cert/0/directory",
                 "/acme/v2.0/cert/"]:
        r = requests.get(env.pcad.api_url + path, verify=env.pcad.ca_pem, timeout=30)
        problem(r, "malformed", 404)


def test_http01_redirects_are_followed_on_the_same_port_only(env, http01):
    c = Client(env)
    c.register(env.token())
    # Followed: a redirect to another path (and name) on the configured port.
    _, order = c.order(["redir.apps.acme.test"])
    authz = c.post(order["authorizations"][0], None).json()
    ch = next(x for x in authz["challenges"] if x["type"] == "http-01")
    http01.answers[ch["token"]] = ("redirect",
                                   f"http://other.apps.acme.test:{env.http_port}/moved/X")
    http01.answers["X"] = c.key_authorization(ch["token"])
    assert c.post(ch["url"], {}).status_code == 200
    assert c.wait_authz(order) is None
    # Refused: a redirect to another port, or to https.
    for target in [f"http://redir2.apps.acme.test:{env.tls_port}/x", "https://x.apps.acme.test/"]:
        _, order = c.order(["redir2.apps.acme.test"])
        authz = c.post(order["authorizations"][0], None).json()
        ch = next(x for x in authz["challenges"] if x["type"] == "http-01")
        http01.answers[ch["token"]] = ("redirect", target)
        assert c.post(ch["url"], {}).status_code == 200
        authz = c.wait_authz(order)
        assert authz["status"] == "invalid"
        assert authz["challenges"][0]["error"]["type"] == ERR + "connection", authz


def test_dns01_through_the_configured_resolver(env):
    import hashlib
    c = Client(env)
    c.register(env.token())
    for name, right in [("dnsok.apps.acme.test", True), ("dnsbad.apps.acme.test", False)]:
        _, order = c.order([name])
        authz = c.post(order["authorizations"][0], None).json()
        ch = next(x for x in authz["challenges"] if x["type"] == "dns-01")
        digest = b64(hashlib.sha256(c.key_authorization(ch["token"]).encode()).digest())
        env.dns.set_txt(f"_acme-challenge.{name}.", digest if right else b64(b"wrong"))
        assert c.post(ch["url"], {}).status_code == 200
        authz = c.wait_authz(order)
        if right:
            assert authz is None
            r, _ = c.finalize(order, [name])
            assert r.status_code == 200 and r.json()["status"] == "valid", r.text
        else:
            assert authz["status"] == "invalid"
            assert authz["challenges"][1]["error"]["type"] == ERR + "incorrectResponse", authz
