"""Issuer certificates (ROOT / INTERMEDIATE): every keyInfo, chains checked by `openssl verify`,
X.509 extensions, the certificate resource, list/search/download, and every constraint and state
conflict of the seed's Issue Certificate body (API.md "Limits and validation")."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from pcadtest import (
    CURVES, HEX_SERIAL, future_date, KEY_CASES, SIGNATURE_OIDS, aki, cert_text, extension, fails, issuer_body,
    key_id, load_pem, ok, openssl_verify, parse_timestamp, serial_matches, ski, split_pems, unique,
)

CERT_FIELDS = {"certId", "caStoreId", "name", "description", "certificateType", "parentCertId",
               "templateId", "commonName", "subject", "issuer", "serialNumber", "notBefore",
               "notAfter", "status", "revokedAt", "revocationReason", "keyInfo",
               "signatureAlgorithm", "maxDepth", "sans", "ipSans", "urlSans", "crlUrl", "ocspUrl",
               "createdAt"}
KEY_IDS = [key_id(a, s) for a, s, _ in KEY_CASES]
INTERMEDIATES = ["ec256-under-rsa2048", "rsa2048-under-ec384", "ed25519-under-rsa2048-int",
                 "ed25519-under-ed25519", "ec521-under-ec256"]


@pytest.fixture(scope="module")
def store(admin):
    return admin.create_store(unique("issuers"))


@pytest.fixture(scope="module")
def sid(store):
    return store["caStoreId"]


@pytest.fixture(scope="module")
def ec_root(admin, sid):
    """A fast EC P-256 ROOT with maxDepth 2 in this module's store."""
    return admin.new_issuer(sid, issuer_body("EC", 256, max_depth=2, cn="Module Root CA"))


def chain_of(detail):
    return split_pems(detail["caChainPem"])


def check_public_key(cert, alg, size):
    key = cert.public_key()
    if alg == "RSA":
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == size
    elif alg in ("EC", "ECDSA"):
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == CURVES[size]
    else:
        assert isinstance(key, ed25519.Ed25519PublicKey)


def check_issuer_extensions(cert, max_depth):
    bc = extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc is not None and bc.critical, "basicConstraints must be present and critical"
    assert bc.value.ca is True
    assert bc.value.path_length == (None if max_depth == -1 else max_depth)
    ku = extension(cert, ExtensionOID.KEY_USAGE)
    assert ku is not None and ku.critical, "keyUsage must be present and critical"
    assert ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.key_encipherment and not ku.value.data_encipherment
    assert ski(cert)
    assert cert.version == x509.Version.v3


# ---------------------------------------------------------------------------------------------
# Every key type


@pytest.mark.parametrize("kid", KEY_IDS)
def test_root_for_every_key_type(issuer_set, kid):
    detail = issuer_set["roots"][kid]
    request = issuer_set["requests"][detail["certId"]]
    alg, size, sig = request["keyInfo"]["algorithm"], request["keyInfo"]["keySize"], \
        request["signatureAlgorithm"]
    assert CERT_FIELDS <= set(detail), CERT_FIELDS - set(detail)
    assert detail["certificateType"] == "ROOT"
    assert detail["parentCertId"] is None and detail["templateId"] is None
    assert detail["status"] == "VALID"
    assert detail["name"] == request["name"]
    assert detail["commonName"] == request["subjectInfo"]["commonName"]
    assert detail["caStoreId"] == issuer_set["store"]["caStoreId"]
    assert detail["keyInfo"]["algorithm"] in ({alg} if alg != "ECDSA" else {"EC", "ECDSA"})
    if alg != "ED25519":
        assert detail["keyInfo"]["keySize"] == size
    assert detail["signatureAlgorithm"] == sig
    assert detail["maxDepth"] == request["maxDepth"]
    assert detail["caChainPem"] in ("", None) or split_pems(detail["caChainPem"]) == []
    assert HEX_SERIAL.match(detail["serialNumber"]), detail["serialNumber"]

    cert = load_pem(detail["certificatePem"])
    assert serial_matches(detail["serialNumber"], cert)
    assert cert.serial_number > 0 and cert.serial_number.bit_length() >= 64
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        request["subjectInfo"]["commonName"]
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "KR"
    assert cert.signature_algorithm_oid.dotted_string == SIGNATURE_OIDS[sig]
    check_public_key(cert, alg, size)
    check_issuer_extensions(cert, request["maxDepth"])
    akid = extension(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if akid is not None:  # optional on a self-signed root; if present it must match its SKI
        assert akid.value.key_identifier == ski(cert)
    # "pcad Test Root CA ..." is not a hostname: it is not copied into the SANs.
    san = extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san is None or not san.value.get_values_for_type(x509.DNSName)
    assert detail["sans"] in (None, [])

    # Validity: about ttlValue, backdated by the default 30 s; JSON times match the certificate.
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    span = (not_after - not_before).total_seconds()
    assert request["ttlValue"] - 5 <= span <= request["ttlValue"] + 30 + 5, span
    assert parse_timestamp(detail["notBefore"]) == not_before
    assert parse_timestamp(detail["notAfter"]) == not_after
    created = parse_timestamp(detail["createdAt"])
    assert dt.timedelta(seconds=25) <= created - not_before <= dt.timedelta(seconds=90), \
        "notBefore should be backdated by the default backDateValidation (30 s)"

    # The self-signed certificate verifies against itself.
    openssl_verify(detail["certificatePem"], detail["certificatePem"])
    text = cert_text(detail["certificatePem"])
    assert "CA:TRUE" in text and "Certificate Sign, CRL Sign" in text


@pytest.mark.parametrize("name", INTERMEDIATES)
def test_intermediate_chains_to_its_root(issuer_set, name):
    detail, parent, request = issuer_set["intermediates"][name]
    assert detail["certificateType"] == "INTERMEDIATE"
    assert detail["parentCertId"] == parent["certId"]
    assert detail["maxDepth"] == request["maxDepth"]
    assert detail["signatureAlgorithm"] == request["signatureAlgorithm"]
    cert, parent_cert = load_pem(detail["certificatePem"]), load_pem(parent["certificatePem"])
    assert cert.issuer == parent_cert.subject
    assert aki(cert) == ski(parent_cert), "AKI must be the parent's SKI"
    assert ski(cert) != ski(parent_cert)
    # Signed by the parent with the parent's signatureAlgorithm.
    assert cert.signature_algorithm_oid.dotted_string == SIGNATURE_OIDS[parent["signatureAlgorithm"]]
    check_public_key(cert, request["keyInfo"]["algorithm"], request["keyInfo"]["keySize"])
    check_issuer_extensions(cert, request["maxDepth"])
    assert cert.not_valid_after_utc <= parent_cert.not_valid_after_utc

    # caChainPem: the issuer first, up to and including the root.
    chain = chain_of(detail)
    assert chain, "an INTERMEDIATE has a caChainPem"
    assert load_pem(chain[0]) == parent_cert
    root = load_pem(chain[-1])
    assert root.subject == root.issuer
    assert [load_pem(p) for p in chain[1:]] == [load_pem(p) for p in chain_of(parent)]
    openssl_verify(detail["certificatePem"], chain[-1], chain[:-1])
    # The same with the CLI's usual flags, and against a wrong root it fails.
    wrong_root = issuer_set["roots"]["EC-521"]["certificatePem"]
    if wrong_root != chain[-1]:
        with pytest.raises(AssertionError):
            openssl_verify(detail["certificatePem"], wrong_root, chain[:-1])


def test_chain_of_a_second_level_intermediate(issuer_set):
    detail, parent, _ = issuer_set["intermediates"]["ed25519-under-rsa2048-int"]
    chain = chain_of(detail)
    assert len(chain) == 2
    assert chain[0].strip() == parent["certificatePem"].strip()
    assert chain[1].strip() == issuer_set["roots"]["EC-384"]["certificatePem"].strip()


def test_get_on_both_editions_is_identical(issuer_set):
    api, sid = issuer_set["api"], issuer_set["store"]["caStoreId"]
    detail = issuer_set["roots"]["EC-256"]
    assert ok(api.with_(edition="cas").get(f"/{sid}/certs/{detail['certId']}")) == detail


# ---------------------------------------------------------------------------------------------
# List, search, download


def test_list_filters_and_search(issuer_set):
    api, sid = issuer_set["api"], issuer_set["store"]["caStoreId"]
    total = len(issuer_set["roots"]) + len(issuer_set["intermediates"])
    for kind in ("all", "issuer"):
        page = ok(api.get(f"/{sid}/certs", params={"type": kind, "size": 100}))
        assert page["totalCount"] == total and len(page["items"]) == total, kind
        assert {c["certificateType"] for c in page["items"]} == {"ROOT", "INTERMEDIATE"}
        for item in page["items"]:
            assert CERT_FIELDS <= set(item), CERT_FIELDS - set(item)
    default = ok(api.get(f"/{sid}/certs"))
    assert default["totalCount"] == total and default["size"] == 10 and len(default["items"]) == 10
    assert ok(api.get(f"/{sid}/certs", params={"type": "leaf"}))["totalCount"] == 0
    page1 = ok(api.get(f"/{sid}/certs", params={"page": 1, "size": 5}))
    assert page1["page"] == 1 and len(page1["items"]) == min(5, total - 5)

    target = issuer_set["roots"]["RSA-3072"]
    found = ok(api.get(f"/{sid}/certs", params={"search": target["commonName"]}))
    assert [c["certId"] for c in found["items"]] == [target["certId"]]
    assert ok(api.get(f"/{sid}/certs", params={"search": "no such common name"}))["totalCount"] == 0


def test_list_rejects_unknown_type(issuer_set):
    api, sid = issuer_set["api"], issuer_set["store"]["caStoreId"]
    fails(api.get(f"/{sid}/certs", params={"type": "bogus"}), 400, (40000, 40001), "type")


@pytest.mark.parametrize("edition", ["ca-stores", "cas"])
def test_download_is_a_pem_attachment(issuer_set, edition):
    api, sid = issuer_set["api"].with_(edition=edition), issuer_set["store"]["caStoreId"]
    detail = issuer_set["intermediates"]["ec256-under-rsa2048"][0]
    reply = api.get(f"/{sid}/certs/{detail['certId']}/download")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].split(";")[0].strip() == "application/x-pem-file"
    assert reply.headers["Content-Disposition"] == f"attachment; filename={detail['name']}.pem"
    assert split_pems(reply.text)[0].strip() == detail["certificatePem"].strip()
    assert load_pem(reply.text) == load_pem(detail["certificatePem"])


def test_download_of_unknown_cert_is_404(issuer_set):
    api, sid = issuer_set["api"], issuer_set["store"]["caStoreId"]
    fails(api.get(f"/{sid}/certs/999999999/download"), 404, 40400)
    fails(api.get(f"/{sid}/certs/999999999"), 404, 40400)


# ---------------------------------------------------------------------------------------------
# SANs and subject fields of issuers


def test_hostname_common_name_is_copied_into_dns_sans(admin, sid):
    detail = admin.new_issuer(sid, issuer_body(cn="ca.example.com", max_depth=0))
    san = extension(load_pem(detail["certificatePem"]), ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san is not None and "ca.example.com" in san.value.get_values_for_type(x509.DNSName)

    excluded = admin.new_issuer(sid, issuer_body(cn="ca2.example.com", max_depth=0,
                                                 excludeCommonNameFromSans=True))
    san = extension(load_pem(excluded["certificatePem"]), ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san is None or "ca2.example.com" not in san.value.get_values_for_type(x509.DNSName)


def test_issuer_sans_and_full_subject(admin, sid):
    subject_info = {"commonName": "Full Subject CA", "serialNumber": "S-42", "country": "KR",
                    "stateOrProvince": "Gyeonggi-do", "locality": "Seongnam",
                    "streetAddress": "16 Daewangpangyo-ro", "postalCode": "13529",
                    "organization": "pcad tests", "organizationalUnit": "PKI"}
    body = issuer_body(max_depth=0, subjectInfo=subject_info, sans=["pki.example.com"],
                       ipSans=["10.0.0.1", "2001:db8::1"], urlSans=["https://pki.example.com/ca"],
                       otherSans=[{"oid": "1.3.6.1.4.1.311.20.2.3", "type": "UTF8String",
                                   "value": "ca@example.com"}])
    detail = admin.new_issuer(sid, body)
    cert = load_pem(detail["certificatePem"])
    attrs = {a.oid: a.value for a in cert.subject}
    assert attrs[NameOID.COMMON_NAME] == "Full Subject CA"
    assert attrs[NameOID.SERIAL_NUMBER] == "S-42"
    assert attrs[NameOID.STATE_OR_PROVINCE_NAME] == "Gyeonggi-do"
    assert attrs[NameOID.LOCALITY_NAME] == "Seongnam"
    assert attrs[NameOID.STREET_ADDRESS] == "16 Daewangpangyo-ro"
    assert attrs[NameOID.POSTAL_CODE] == "13529"
    assert attrs[NameOID.ORGANIZATIONAL_UNIT_NAME] == "PKI"
    san = extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert "pki.example.com" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"10.0.0.1",
                                                                            "2001:db8::1"}
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["https://pki.example.com/ca"]
    others = san.get_values_for_type(x509.OtherName)
    assert [o.type_id.dotted_string for o in others] == ["1.3.6.1.4.1.311.20.2.3"]
    assert b"ca@example.com" in others[0].value
    assert "pki.example.com" in detail["sans"]
    assert set(detail["ipSans"]) == {"10.0.0.1", "2001:db8::1"}
    assert detail["urlSans"] == ["https://pki.example.com/ca"]


def test_specific_date_and_back_date(admin, sid):
    body = issuer_body(max_depth=0, backDateValidation=3600)
    del body["ttlValue"]
    body["specificDate"], when = future_date(3 * 365)
    detail = admin.new_issuer(sid, body)
    cert = load_pem(detail["certificatePem"])
    assert cert.not_valid_after_utc == when
    created = parse_timestamp(detail["createdAt"])
    assert dt.timedelta(seconds=3590) <= created - cert.not_valid_before_utc \
        <= dt.timedelta(seconds=3610)


def test_boundary_values_are_accepted(admin, sid):
    body = issuer_body(max_depth=3, ttl=315360000, backDateValidation=2592000, name="n" * 64,
                       description="d" * 256,
                       subjectInfo={"commonName": "c" * 64, "country": "US",
                                    "organization": "o" * 64, "organizationalUnit": "u" * 64,
                                    "stateOrProvince": "s" * 128, "locality": "l" * 128,
                                    "streetAddress": "a" * 128, "postalCode": "p" * 40,
                                    "serialNumber": "n" * 64})
    detail = admin.new_issuer(sid, body)
    assert detail["maxDepth"] == 3
    assert load_pem(detail["certificatePem"]).extensions.get_extension_for_oid(
        ExtensionOID.BASIC_CONSTRAINTS).value.path_length == 3


# ---------------------------------------------------------------------------------------------
# Constraints: each mutates a valid EC-256 ROOT request. (id, mutate, codes, fields)


def without(*path):
    def mutate(body):
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def setting(value, *path):
    def mutate(body):
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def both_ttl_and_date(body):
    body["specificDate"] = "2030-01-01T00:00:00"


def no_ttl_nor_date(body):
    del body["ttlValue"]


def specific_date(value):
    def mutate(body):
        del body["ttlValue"]
        body["specificDate"] = value
    return mutate


EITHER = ("ttlValue", "specificDate")
KEY = ("keyInfo", "keySize")
CONSTRAINTS = [
    ("subjectInfo-missing", without("subjectInfo"), (40000, 40001), "subjectInfo"),
    ("commonName-missing", without("subjectInfo", "commonName"), (40000, 40001), "commonName"),
    ("commonName-empty", setting("", "subjectInfo", "commonName"), (40000, 40001), "commonName"),
    ("commonName-65", setting("c" * 65, "subjectInfo", "commonName"), 40001, "commonName"),
    ("country-KOR", setting("KOR", "subjectInfo", "country"), 40001, "country"),
    ("country-1", setting("K", "subjectInfo", "country"), 40001, "country"),
    ("country-digits", setting("12", "subjectInfo", "country"), 40001, "country"),
    ("serialNumber-65", setting("s" * 65, "subjectInfo", "serialNumber"), 40001, "serialNumber"),
    ("stateOrProvince-129", setting("s" * 129, "subjectInfo", "stateOrProvince"), 40001,
     "stateOrProvince"),
    ("locality-129", setting("l" * 129, "subjectInfo", "locality"), 40001, "locality"),
    ("streetAddress-129", setting("a" * 129, "subjectInfo", "streetAddress"), 40001,
     "streetAddress"),
    ("postalCode-41", setting("p" * 41, "subjectInfo", "postalCode"), 40001, "postalCode"),
    ("organization-65", setting("o" * 65, "subjectInfo", "organization"), 40001, "organization"),
    ("organizationalUnit-65", setting("u" * 65, "subjectInfo", "organizationalUnit"), 40001,
     "organizationalUnit"),
    ("subjectInfo-unknown-field", setting("x", "subjectInfo", "emailAddress"), (40000, 40001),
     "emailAddress"),
    ("name-missing", without("name"), (40000, 40001), "name"),
    ("name-65", setting("n" * 65, "name"), 40001, "name"),
    ("description-257", setting("d" * 257, "description"), 40001, "description"),
    ("certificateType-missing", without("certificateType"), (40000, 40001), "certificateType"),
    ("certificateType-LEAF", setting("LEAF", "certificateType"), (40000, 40001),
     "certificateType"),
    ("certificateType-bogus", setting("SUBCA", "certificateType"), 40000, "certificateType"),
    ("ttl-and-date", both_ttl_and_date, 40001, EITHER),
    ("neither-ttl-nor-date", no_ttl_nor_date, 40001, EITHER),
    ("ttlValue-315360001", setting(315360001, "ttlValue"), 40001, "ttlValue"),
    ("ttlValue-negative", setting(-1, "ttlValue"), (40000, 40001), "ttlValue"),
    ("ttlValue-string", setting("3600", "ttlValue"), 40000, "ttlValue"),
    ("specificDate-format", specific_date("2030-01-01 00:00:00"), (40000, 40001), "specificDate"),
    ("specificDate-invalid-month", specific_date("2030-13-01T00:00:00"), (40000, 40001),
     "specificDate"),
    ("specificDate-3000", specific_date("3000-01-01T00:00:00"), 40001, "specificDate"),
    ("backDateValidation-2592001", setting(2592001, "backDateValidation"), 40001,
     "backDateValidation"),
    ("backDateValidation-negative", setting(-1, "backDateValidation"), (40000, 40001),
     "backDateValidation"),
    ("maxDepth-4", setting(4, "maxDepth"), 40001, "maxDepth"),
    ("maxDepth--2", setting(-2, "maxDepth"), 40001, "maxDepth"),
    ("keyInfo-missing", without("keyInfo"), (40000, 40001), "keyInfo"),
    ("keyInfo-RSA-1024", setting({"algorithm": "RSA", "keySize": 1024}, "keyInfo"), 40001, KEY),
    ("keyInfo-RSA-8192", setting({"algorithm": "RSA", "keySize": 8192}, "keyInfo"), 40001, KEY),
    ("keyInfo-EC-255", setting({"algorithm": "EC", "keySize": 255}, "keyInfo"), 40001, KEY),
    ("keyInfo-DSA", setting({"algorithm": "DSA", "keySize": 2048}, "keyInfo"), 40000,
     ("keyInfo", "algorithm")),
    ("keyInfo-size-string", setting({"algorithm": "EC", "keySize": "256"}, "keyInfo"), 40000, KEY),
    ("signatureAlgorithm-missing", without("signatureAlgorithm"), (40000, 40001),
     "signatureAlgorithm"),
    ("signatureAlgorithm-bogus", setting("MD5_WITH_RSA", "signatureAlgorithm"), 40000,
     "signatureAlgorithm"),
    ("signatureAlgorithm-ED25519-on-EC", setting("ED25519", "signatureAlgorithm"), 40001,
     "signatureAlgorithm"),
    ("signatureAlgorithm-RSA-on-EC", setting("SHA256_WITH_RSA", "signatureAlgorithm"), 40001,
     "signatureAlgorithm"),
    ("ipSans-invalid", setting(["999.1.1.1"], "ipSans"), 40001, "ipSans"),
    ("ipSans-hostname", setting(["not-an-ip"], "ipSans"), 40001, "ipSans"),
    ("urlSans-invalid", setting(["not a url"], "urlSans"), 40001, "urlSans"),
    ("sans-not-a-list", setting("a.example.com", "sans"), 40000, "sans"),
    ("otherSans-oid", setting([{"oid": "1.2.x", "type": "UTF8String", "value": "v"}],
                              "otherSans"), 40001, "oid"),
    ("otherSans-oid-one-arc", setting([{"oid": "1", "type": "UTF8String", "value": "v"}],
                                      "otherSans"), 40001, "oid"),
    ("otherSans-type", setting([{"oid": "1.2.3.4", "type": "Utf9String", "value": "v"}],
                               "otherSans"), (40000, 40001), "type"),
    ("otherSans-value-256", setting([{"oid": "1.2.3.4", "type": "UTF8String", "value": "v" * 256}],
                                    "otherSans"), 40001, "value"),
    ("otherSans-value-missing", setting([{"oid": "1.2.3.4", "type": "UTF8String"}], "otherSans"),
     (40000, 40001), "value"),
    ("unknown-field", setting(True, "excludeCommonNameFromSan"), (40000, 40001),
     "excludeCommonNameFromSan"),
]


@pytest.mark.parametrize("mutate,codes,field", [c[1:] for c in CONSTRAINTS],
                         ids=[c[0] for c in CONSTRAINTS])
def test_issuer_constraints(admin, sid, mutate, codes, field):
    body = issuer_body("EC", 256, max_depth=0)
    mutate(body)
    before = admin.cert_count(sid)
    fails(admin.post(f"/{sid}/certs", body), 400, codes, field)
    assert admin.cert_count(sid) == before, "a rejected issuance stored something"


def test_rsa_key_with_ecdsa_signature_is_40001(admin, sid):
    before = admin.cert_count(sid)
    body = issuer_body("RSA", 2048, "SHA256_WITH_ECDSA", max_depth=0)
    fails(admin.post(f"/{sid}/certs", body), 400, 40001, "signatureAlgorithm")
    body = issuer_body("ED25519", 256, "SHA256_WITH_RSA", max_depth=0)
    fails(admin.post(f"/{sid}/certs", body), 400, 40001, "signatureAlgorithm")
    assert admin.cert_count(sid) == before


def test_intermediate_without_parent_is_400(admin, sid):
    before = admin.cert_count(sid)
    body = issuer_body(kind="INTERMEDIATE", max_depth=0)
    fails(admin.post(f"/{sid}/certs", body), 400, (40000, 40001), "parentCertId")
    assert admin.cert_count(sid) == before


def test_parent_that_does_not_exist(admin, sid):
    before = admin.cert_count(sid)
    reply = admin.post(f"/{sid}/certs", issuer_body(kind="INTERMEDIATE", parent=999999999))
    assert reply.status in (400, 404), reply
    fails(reply, reply.status, 40400 if reply.status == 404 else 40001, "parentCertId")
    assert admin.cert_count(sid) == before


def test_parent_from_another_store(admin, sid):
    other = admin.create_store(unique("other-store"))
    parent = admin.create_issuer(other["caStoreId"], issuer_body(max_depth=2))
    before = admin.cert_count(sid)
    reply = admin.post(f"/{sid}/certs", issuer_body(kind="INTERMEDIATE",
                                                     parent=parent["certId"], ttl=86400))
    # API.md: certificates of another store are "no such certificate" here (404); a 400 naming
    # parentCertId is the other reading of the contract.
    assert reply.status in (400, 404), reply
    fails(reply, reply.status, 40400 if reply.status == 404 else 40001, "parentCertId")
    assert admin.cert_count(sid) == before


def test_parent_from_another_appkey_is_404(admin, sid, pcad):
    foreign = admin.with_(appkey=admin.appkey + "-foreign")
    fstore = foreign.create_store()
    parent = foreign.create_issuer(fstore["caStoreId"], issuer_body(max_depth=2))
    before = admin.cert_count(sid)
    reply = admin.post(f"/{sid}/certs", issuer_body(kind="INTERMEDIATE", parent=parent["certId"],
                                                     ttl=86400))
    assert reply.status in (400, 404), reply
    fails(reply, reply.status, 40400 if reply.status == 404 else 40001, "parentCertId")
    assert admin.cert_count(sid) == before


def test_parent_with_max_depth_0_is_409(admin, sid):
    parent = admin.create_issuer(sid, issuer_body(max_depth=0, cn="Depth Zero Root"))
    before = admin.cert_count(sid)
    fails(admin.post(f"/{sid}/certs", issuer_body(kind="INTERMEDIATE", parent=parent["certId"],
                                                   max_depth=0, ttl=86400)), 409, 40900)
    assert admin.cert_count(sid) == before


def test_depth_is_enforced_down_the_chain(admin, sid):
    root = admin.create_issuer(sid, issuer_body(max_depth=1, cn="Depth One Root"))
    child = admin.create_issuer(sid, issuer_body(kind="INTERMEDIATE", parent=root["certId"],
                                                 max_depth=0, ttl=30 * 86400))
    before = admin.cert_count(sid)
    fails(admin.post(f"/{sid}/certs", issuer_body(kind="INTERMEDIATE", parent=child["certId"],
                                                   max_depth=0, ttl=86400)), 409, 40900)
    assert admin.cert_count(sid) == before


def test_intermediate_may_not_outlive_its_parent(admin, sid):
    parent = admin.create_issuer(sid, issuer_body(max_depth=1, ttl=2 * 86400, cn="Short Root"))
    before = admin.cert_count(sid)
    message = fails(admin.post(f"/{sid}/certs", issuer_body(
        kind="INTERMEDIATE", parent=parent["certId"], max_depth=0, ttl=3 * 86400)), 400, 40001)
    assert parent["notAfter"] in message, \
        f"message should name the parent's notAfter {parent['notAfter']}: {message}"

    body = issuer_body(kind="INTERMEDIATE", parent=parent["certId"], max_depth=0)
    del body["ttlValue"]
    body["specificDate"] = "2999-12-31T23:59:59"
    message = fails(admin.post(f"/{sid}/certs", body), 400, 40001)
    assert parent["notAfter"] in message
    assert admin.cert_count(sid) == before


def test_intermediate_under_module_root(admin, sid, ec_root):
    detail = admin.new_issuer(sid, issuer_body("RSA", 2048, "SHA384_WITH_RSA",
                                                kind="INTERMEDIATE", parent=ec_root["certId"],
                                                max_depth=1, ttl=86400))
    cert = load_pem(detail["certificatePem"])
    # Its own signatureAlgorithm is for what it signs; its certificate is signed by the EC root.
    assert detail["signatureAlgorithm"] == "SHA384_WITH_RSA"
    assert cert.signature_algorithm_oid.dotted_string == SIGNATURE_OIDS["SHA256_WITH_ECDSA"]
    assert extension(cert, ExtensionOID.BASIC_CONSTRAINTS).value.path_length == 1
    openssl_verify(detail["certificatePem"], ec_root["certificatePem"])


def test_issuance_in_unknown_store_is_404(admin):
    fails(admin.post("/999999999/certs", issuer_body()), 404, 40400)
