"""CRLs (API.md "CRL", seed's CRL routes): signatures checked by openssl and Python
cryptography, revocation checking with `openssl verify -crl_check[_all]`, pkilint, the CRL number,
thisUpdate/nextUpdate, reason codes, downloads and their headers, roles, disabled CRLs, and the
CRL distribution point written into certificates."""

import datetime as dt
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from pcadtest import (
    SIGNATURE_OIDS, Api, extension, fails, issuer_body, load_pem, ok, parse_timestamp, ski,
    split_pems, unique,
)
from revocation_helpers import (
    CHAIN_KEYS, REASONS, anon_get, build_chain, crl_number, crl_tbs_fields, entry_reason,
    fetch_crl, out, pkilint, public_url, revoked_certificates_field, serious, sh, template_body,
    tls_url,
)

REFRESH_DAYS = 3  # not the default (7), so that nextUpdate - thisUpdate proves the setting counts
LEVELS = ["ROOT", "INTERMEDIATE"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("crl")


@pytest.fixture(scope="module")
def store(admin):
    return admin.create_store(unique("crl"), crlActive=True, crlRefreshPeriod=REFRESH_DAYS,
                              ocspActive=True, ocspRefreshPeriod=1)


@pytest.fixture(scope="module")
def chains(admin, store, workdir):
    """Per key family, a ROOT above an INTERMEDIATE, with (on the INTERMEDIATE's CRL) a good
    leaf, a leaf revoked UNSPECIFIED and one revoked KEY_COMPROMISE, and (on the ROOT's CRL) a
    second INTERMEDIATE revoked CA_COMPROMISE, with a leaf of its own issued before that."""
    sid = store["caStoreId"]
    result = {}
    for label, (root_key, int_key) in CHAIN_KEYS.items():
        chain = build_chain(admin, sid, workdir, root_key, int_key, label=label)
        chain.good = chain.issue()
        chain.unspecified = chain.issue()
        chain.compromised = chain.issue()
        chain.revoke(chain.unspecified.cert_id, "UNSPECIFIED")
        chain.revoke(chain.compromised.cert_id, "KEY_COMPROMISE")
        spare = admin.new_issuer(sid, issuer_body(*int_key, kind="INTERMEDIATE",
                                                  parent=chain.root["certId"], max_depth=0,
                                                  ttl=365 * 86400))
        spare_tpl = admin.create_template(sid, template_body(spare["certId"]))
        chain.spare = spare
        chain.spare_path = chain.file("spare.pem", spare["certificatePem"])
        chain.spare_leaf = chain.issue(template=spare_tpl)
        chain.revoke(spare["certId"], "CA_COMPROMISE")
        result[label] = chain
    return result


def issuer_of(chain, level):
    return chain.root if level == "ROOT" else chain.int


def crl_path(pcad, appkey, sid, cert_id, form="der", edition="ca-stores"):
    return public_url(pcad, appkey, sid, f"/certs/{cert_id}/crl/{form}", edition)


def save_crl_pems(chain, pcad, appkey, name, *issuer_ids):
    """Downloads the PEM CRLs of `issuer_ids` into one file (for -CRLfile)."""
    text = ""
    for cid in issuer_ids:
        r = anon_get(pcad, crl_path(pcad, appkey, chain.sid, cid, "pem"))
        assert r.status_code == 200, r.text
        text += r.text if r.text.endswith("\n") else r.text + "\n"
    return chain.file(name, text)


# ---------------------------------------------------------------------------------------------
# Signatures, structure, lint


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("label", list(CHAIN_KEYS))
def test_crl_signature_verifies(pcad, appkey, chains, label, level):
    chain = chains[label]
    issuer = issuer_of(chain, level)
    issuer_cert = load_pem(issuer["certificatePem"])
    crl, der = fetch_crl(pcad, appkey, chain.sid, issuer["certId"])
    path = chain.file(f"crl-{level}.der", der)

    proc = sh(["openssl", "crl", "-inform", "DER", "-in", path, "-CAfile", chain.chain_path,
               "-noout"])
    assert proc.returncode == 0 and "verify OK" in out(proc), out(proc)
    # The other chain's root does not verify it (the check above is real).
    other = chains["EC" if label != "EC" else "RSA"]
    proc = sh(["openssl", "crl", "-inform", "DER", "-in", path, "-CAfile", other.chain_path,
               "-noout"])
    assert "verify OK" not in out(proc), out(proc)

    assert crl.is_signature_valid(issuer_cert.public_key())
    assert crl.issuer == issuer_cert.subject
    assert crl.signature_algorithm_oid.dotted_string == \
        SIGNATURE_OIDS[issuer["signatureAlgorithm"]]
    version = [v for t, v in crl_tbs_fields(der) if t == 0x02]
    assert version == [b"\x01"], "X.509 v2 CRL (version INTEGER 1)"
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == ski(issuer_cert)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert not number.critical and number.value.crl_number > 0


def test_crl_linter_reports_errors(tmp_path):
    """The pkilint wrapper really reports findings: a CRL without authorityKeyIdentifier and
    cRLNumber is an ERROR for pkilint's PKIX profile."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Bad CRL issuer")])
    now = dt.datetime.now(dt.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
           .next_update(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    path = tmp_path / "bad.crl"
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    codes = {f["code"] for f in serious(pkilint("lint_crl", path, "-t", "CRL", "-p", "PKIX"))}
    assert codes, "pkilint found nothing wrong with a CRL lacking AKI and cRLNumber"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("label", list(CHAIN_KEYS))
def test_crl_lints_clean(pcad, appkey, chains, label, level):
    chain = chains[label]
    issuer = issuer_of(chain, level)
    crl, der = fetch_crl(pcad, appkey, chain.sid, issuer["certId"])
    assert len(crl) >= (2 if level == "INTERMEDIATE" else 1), "entries are linted too"
    path = chain.file(f"lint-{level}.der", der)
    findings = pkilint("lint_crl", path, "-t", "CRL", "-p", "PKIX")
    assert serious(findings) == [], findings


@pytest.mark.parametrize("label", list(CHAIN_KEYS))
def test_openssl_crl_check(pcad, appkey, chains, label):
    chain = chains[label]
    both = save_crl_pems(chain, pcad, appkey, "crls.pem", chain.root["certId"], chain.int["certId"])
    int_only = save_crl_pems(chain, pcad, appkey, "int-crl.pem", chain.int["certId"])

    def verify(leaf_path, crl_file, flag, untrusted):
        return sh(["openssl", "verify", flag, "-CRLfile", crl_file, "-CAfile", chain.root_path,
                   "-untrusted", untrusted, leaf_path])

    for flag, crls in (("-crl_check_all", both), ("-crl_check", int_only)):
        proc = verify(chain.good.path, crls, flag, chain.int_path)
        assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), out(proc)
        for leaf in (chain.unspecified, chain.compromised):
            proc = verify(leaf.path, crls, flag, chain.int_path)
            assert proc.returncode != 0 and "certificate revoked" in out(proc), out(proc)
    # A leaf below the revoked INTERMEDIATE: revoked through the ROOT's CRL (with -crl_check_all).
    spare_crl = save_crl_pems(chain, pcad, appkey, "spare-crls.pem", chain.root["certId"],
                              chain.spare["certId"])
    proc = verify(chain.spare_leaf.path, spare_crl, "-crl_check_all", chain.spare_path)
    assert proc.returncode != 0 and "certificate revoked" in out(proc), out(proc)
    # The same leaf with only its own issuer's (clean) CRL is fine: the entry above is the ROOT's.
    spare_only = save_crl_pems(chain, pcad, appkey, "spare-only.pem", chain.spare["certId"])
    proc = verify(chain.spare_leaf.path, spare_only, "-crl_check", chain.spare_path)
    assert proc.returncode == 0, out(proc)


@pytest.mark.parametrize("label", list(CHAIN_KEYS))
def test_crl_entries_and_reasons(pcad, appkey, admin, chains, label):
    chain = chains[label]
    crl, _ = fetch_crl(pcad, appkey, chain.sid, chain.int["certId"])
    by_serial = {format(e.serial_number, "x"): e for e in crl}
    assert format(chain.good.cert.serial_number, "x") not in by_serial
    for leaf, reason in ((chain.unspecified, None),
                         (chain.compromised, x509.ReasonFlags.key_compromise)):
        entry = by_serial[format(leaf.cert.serial_number, "x")]
        assert entry_reason(entry) == reason
        detail = admin.cert(chain.sid, leaf.cert_id)
        assert entry.revocation_date_utc == parse_timestamp(detail["revokedAt"])
    root_crl, _ = fetch_crl(pcad, appkey, chain.sid, chain.root["certId"])
    spare_serial = load_pem(chain.spare["certificatePem"]).serial_number
    assert [e.serial_number for e in root_crl] == [spare_serial], "ROOT CRL lists its children only"
    assert entry_reason(root_crl[0]) == x509.ReasonFlags.ca_compromise


def test_every_reason_code(pcad, appkey, chains):
    chain = chains["EC"]
    leaves = {}
    for reason in REASONS:
        leaf = chain.issue()
        revoked = chain.revoke(leaf.cert_id, reason)
        assert revoked["revocationReason"] == reason
        leaves[reason] = (leaf, revoked)
    crl, der = fetch_crl(pcad, appkey, chain.sid, chain.int["certId"])
    by_serial = {e.serial_number: e for e in crl}
    for reason, (leaf, revoked) in leaves.items():
        entry = by_serial.get(leaf.cert.serial_number)
        assert entry is not None, f"{reason} leaf not on the CRL right after the revoke call"
        assert entry_reason(entry) == REASONS[reason][0], reason
        if reason == "UNSPECIFIED":
            assert len(entry.extensions) == 0, "no reasonCode entry extension for UNSPECIFIED"
        assert entry.revocation_date_utc == parse_timestamp(revoked["revokedAt"])
    path = chain.file("all-reasons.der", der)
    text = sh(["openssl", "crl", "-inform", "DER", "-in", path, "-noout", "-text"],
              check=True).stdout
    for reason, (_, openssl_name) in REASONS.items():
        if reason != "UNSPECIFIED":
            assert openssl_name.lower() in text.lower().replace(" ", ""), (reason, text)
    assert serious(pkilint("lint_crl", path, "-t", "CRL", "-p", "PKIX")) == []


def test_empty_crl_omits_revoked_certificates(pcad, appkey, admin, store, chains):
    sid = store["caStoreId"]
    root = admin.new_issuer(sid, issuer_body("EC", 256, max_depth=0, ttl=86400 * 30))
    crl, der = fetch_crl(pcad, appkey, sid, root["certId"])
    assert len(crl) == 0
    assert revoked_certificates_field(der) is None, \
        "revokedCertificates must be omitted (not an empty SEQUENCE) when nothing is revoked"
    # ... and present (non-empty) once something is revoked.
    _, der = fetch_crl(pcad, appkey, sid, chains["EC"].int["certId"])
    assert revoked_certificates_field(der)


# ---------------------------------------------------------------------------------------------
# CRL number, thisUpdate / nextUpdate


def renew(api, sid, cert_id):
    assert ok(api.call("POST", f"/{sid}/certs/{cert_id}/crl", data="true")) is True


def test_crl_number_strictly_increases(pcad, appkey, admin, chains):
    chain = chains["RSA"]
    sid, cid = chain.sid, chain.int["certId"]

    def number():
        return crl_number(fetch_crl(pcad, appkey, sid, cid)[0])

    seen = [number()]
    renew(admin, sid, cid)
    seen.append(number())
    renew(admin.with_(edition="cas"), sid, cid)  # seed 004's edition
    seen.append(number())
    leaf = chain.issue()
    chain.revoke(leaf.cert_id, "SUPERSEDED")  # a revocation re-signs at once
    crl, _ = fetch_crl(pcad, appkey, sid, cid)
    assert leaf.cert.serial_number in {e.serial_number for e in crl}
    seen.append(crl_number(crl))
    assert seen == sorted(set(seen)), f"CRL numbers must strictly increase: {seen}"

    pcad.daemon.restart()
    after_restart = number()
    assert after_restart >= seen[-1], (seen, after_restart)
    renew(admin, sid, cid)
    seen.append(number())
    assert seen[-1] > after_restart

    renew(admin, sid, cid)
    before_kill = number()
    assert before_kill > seen[-1]
    pcad.daemon.kill9()  # right after an answered renewal
    pcad.daemon.start()
    after_kill = number()
    assert after_kill >= before_kill, \
        f"CRL number went backwards across kill -9: {before_kill} -> {after_kill}"
    renew(admin, sid, cid)
    final = number()
    assert final > after_kill, (before_kill, after_kill, final)
    crl, _ = fetch_crl(pcad, appkey, sid, cid)
    assert leaf.cert.serial_number in {e.serial_number for e in crl}, "revocation survived"


def test_times_match_info_and_refresh_period(pcad, appkey, admin, viewer, chains):
    chain = chains["EC"]
    sid = chain.sid
    for issuer in (chain.root, chain.int):
        cid = issuer["certId"]
        renew(admin, sid, cid)
        now = dt.datetime.now(dt.timezone.utc)
        info = ok(viewer.get(f"/{sid}/certs/{cid}/crl"))
        assert set(info) == {"crlPem", "thisUpdate", "nextUpdate"}, info
        pems = split_pems(info["crlPem"], "X509 CRL")
        assert len(pems) == 1, info["crlPem"]
        crl = x509.load_pem_x509_crl(pems[0].encode())
        this, nxt = parse_timestamp(info["thisUpdate"]), parse_timestamp(info["nextUpdate"])
        assert crl.last_update_utc == this and crl.next_update_utc == nxt
        assert nxt - this == dt.timedelta(days=REFRESH_DAYS)
        assert abs((now - this).total_seconds()) < 60, (now, this)
        # The downloads are that same CRL.
        downloaded, der = fetch_crl(pcad, appkey, sid, cid)
        assert der == crl.public_bytes(serialization.Encoding.DER)
        pem = anon_get(pcad, crl_path(pcad, appkey, sid, cid, "pem")).text
        assert split_pems(pem, "X509 CRL") == pems


def test_revoked_certificate_stays_listed_after_expiry(pcad, appkey, admin, chains):
    chain = chains["EC"]
    leaf = chain.issue(ttl=2)
    chain.revoke(leaf.cert_id, "KEY_COMPROMISE")
    wait = (leaf.cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()
    time.sleep(max(0.0, wait) + 1.2)
    renew(admin, chain.sid, chain.int["certId"])
    crl, _ = fetch_crl(pcad, appkey, chain.sid, chain.int["certId"])
    assert crl.last_update_utc > leaf.cert.not_valid_after_utc
    assert leaf.cert.serial_number in {e.serial_number for e in crl}


# ---------------------------------------------------------------------------------------------
# Downloads, headers, roles


@pytest.mark.parametrize("edition", ["ca-stores", "cas"])
def test_download_headers(pcad, appkey, chains, edition):
    chain = chains["ED25519"]
    sid, cid = chain.sid, chain.int["certId"]
    for base in (public_url, tls_url):  # public listener, and TLS listener without a client cert
        der = anon_get(pcad, base(pcad, appkey, sid, f"/certs/{cid}/crl/der", edition))
        assert der.status_code == 200, der.text
        assert der.headers["Content-Type"].split(";")[0].strip() == "application/pkix-crl"
        assert der.headers["Content-Disposition"] == \
            f"attachment; filename=crl_{sid}_{cid}.crl"
        crl = x509.load_der_x509_crl(der.content)
        pem = anon_get(pcad, base(pcad, appkey, sid, f"/certs/{cid}/crl/pem", edition))
        assert pem.status_code == 200, pem.text
        assert pem.headers["Content-Type"].split(";")[0].strip() == "application/pkix-crl"
        assert pem.headers["Content-Disposition"] == \
            f"attachment; filename=crl_{sid}_{cid}.pem"
        assert pem.text.startswith("-----BEGIN X509 CRL-----"), pem.text[:60]
        assert x509.load_pem_x509_crl(pem.content) == crl


def test_info_and_renew_roles(pcad, appkey, admin, viewer, chains):
    chain = chains["EC"]
    path = f"/{chain.sid}/certs/{chain.int['certId']}/crl"
    for edition in ("ca-stores", "cas"):
        ok(viewer.with_(edition=edition).get(path))
        anonymous = Api(pcad, None, appkey, edition)
        fails(anonymous.get(path), 401, 40100)
        fails(anonymous.call("POST", path, data="true"), 401, 40100)
        fails(viewer.with_(edition=edition).call("POST", path, data="true"), 403, 40300)
        fails(Api(pcad, "norole", appkey, edition).get(path), 403, 40300)
        assert ok(admin.with_(edition=edition).call("POST", path, data="true")) is True
    # Another tenant does not see the store at all.
    fails(admin.with_(appkey=unique("elsewhere")).get(path), 404, 40400)
    fails(admin.with_(appkey=unique("elsewhere")).call("POST", path, data="true"), 404, 40400)
    # Management routes are not on the public listener (only /der and /pem are).
    url = public_url(pcad, appkey, chain.sid, f"/certs/{chain.int['certId']}/crl")
    assert anon_get(pcad, url).status_code == 404
    assert requests.post(url, data="true", timeout=30).status_code == 404


def test_crl_disabled_store_is_404(pcad, appkey, admin):
    store = admin.create_store(unique("no-crl"), crlActive=False, ocspActive=True)
    sid = store["caStoreId"]
    root = admin.new_issuer(sid, issuer_body("EC", 256, max_depth=0, ttl=86400 * 30))
    path = f"/{sid}/certs/{root['certId']}/crl"
    fails(admin.get(path), 404, 40400, "CRL")
    fails(admin.call("POST", path, data="true"), 404, 40400, "CRL")
    for form in ("der", "pem"):
        r = Api(pcad, None, appkey).get(f"{path}/{form}")
        fails(r, 404, 40400, "CRL")
        r = anon_get(pcad, crl_path(pcad, appkey, sid, root["certId"], form))
        assert r.status_code == 404 and r.json()["header"]["resultCode"] == 40400, r.text
        assert "CRL" in r.json()["header"]["resultMessage"], r.text


def test_leaf_and_unknown_ids_are_404(pcad, appkey, admin, chains):
    chain = chains["EC"]
    sid = chain.sid
    other = admin.create_store(unique("crl-other"), crlActive=True)
    for cid in (chain.good.cert_id, 987654321):
        fails(admin.get(f"/{sid}/certs/{cid}/crl"), 404, 40400)
        fails(admin.call("POST", f"/{sid}/certs/{cid}/crl", data="true"), 404, 40400)
        assert anon_get(pcad, crl_path(pcad, appkey, sid, cid)).status_code == 404
    # An issuer of this store, asked under another store of the same appkey.
    fails(admin.get(f"/{other['caStoreId']}/certs/{chain.int['certId']}/crl"), 404, 40400)
    assert anon_get(pcad, crl_path(pcad, appkey, other["caStoreId"],
                                   chain.int["certId"])).status_code == 404
    # ... and under another appkey.
    assert anon_get(pcad, crl_path(pcad, unique("elsewhere"), sid,
                                   chain.int["certId"])).status_code == 404


# ---------------------------------------------------------------------------------------------
# CRL distribution points in certificates


def cdp_urls(cert):
    ext = extension(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS)
    return None if ext is None else [n.value for dp in ext.value for n in dp.full_name]


def test_distribution_point_fetches_the_crl(pcad, appkey, admin, chains):
    chain = chains["RSA"]
    leaf_urls = cdp_urls(chain.good.cert)
    assert leaf_urls == [crl_path(pcad, appkey, chain.sid, chain.int["certId"])], leaf_urls
    assert admin.cert(chain.sid, chain.good.cert_id)["crlUrl"] == leaf_urls[0]
    r = anon_get(pcad, leaf_urls[0])
    assert r.status_code == 200
    assert r.content == fetch_crl(pcad, appkey, chain.sid, chain.int["certId"])[1]
    # The INTERMEDIATE points at its ROOT's CRL.
    int_urls = cdp_urls(chain.int_cert)
    assert int_urls == [crl_path(pcad, appkey, chain.sid, chain.root["certId"])], int_urls
    crl = x509.load_der_x509_crl(anon_get(pcad, int_urls[0]).content)
    assert crl.issuer == chain.root_cert.subject


def test_toggling_crl_active_affects_only_new_certificates(pcad, appkey, admin, workdir):
    name = unique("toggle")
    store = admin.create_store(name, crlActive=False)
    sid = store["caStoreId"]
    chain = build_chain(admin, sid, workdir, ("EC", 256), ("EC", 256), label="toggle")
    before = chain.issue()
    assert cdp_urls(before.cert) is None and cdp_urls(chain.int_cert) is None
    assert admin.cert(sid, before.cert_id)["crlUrl"] is None

    ok(admin.put(f"/{sid}", {"name": name, "crlActive": True, "crlRefreshPeriod": 2}))
    during = chain.issue()
    assert cdp_urls(during.cert) == [crl_path(pcad, appkey, sid, chain.int["certId"])]
    assert admin.cert(sid, during.cert_id)["crlUrl"] == cdp_urls(during.cert)[0]
    old = admin.cert(sid, before.cert_id)
    assert old["crlUrl"] is None and cdp_urls(load_pem(old["certificatePem"])) is None
    crl, _ = fetch_crl(pcad, appkey, sid, chain.int["certId"])
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=2)

    ok(admin.put(f"/{sid}", {"name": name, "crlActive": False}))
    after = chain.issue()
    assert cdp_urls(after.cert) is None
    kept = admin.cert(sid, during.cert_id)
    assert kept["crlUrl"] == cdp_urls(during.cert)[0]
    assert load_pem(kept["certificatePem"]) == during.cert
    assert anon_get(pcad, crl_path(pcad, appkey, sid, chain.int["certId"])).status_code == 404

    # A deleted store's CRLs are gone too.
    ok(admin.put(f"/{sid}", {"name": name, "crlActive": True}))
    assert anon_get(pcad, crl_path(pcad, appkey, sid, chain.int["certId"])).status_code == 200
    ok(admin.delete(f"/{sid}"))
    for form in ("der", "pem"):
        assert anon_get(pcad, crl_path(pcad, appkey, sid, chain.int["certId"], form)) \
            .status_code == 404
    fails(admin.get(f"/{sid}/certs/{chain.int['certId']}/crl"), 404, 40400)
