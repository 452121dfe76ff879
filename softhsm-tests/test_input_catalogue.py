"""Input catalogue (issue "Reliability and security", item 5): one case per seed constraint that
test_stores.py, test_issuers.py and test_templates_leaves.py do not already check. Each case
asserts the 4xx, the envelope (`isSuccessful: false`, `body: null`, the resultCode of API.md's
table), a resultMessage naming the field, and that nothing was written (counts, and the objects a
PUT / revoke / renew would change, are as before).

Covered here: leaf issuance fields (types, ranges, date form and range, GENERATE/SIGN-only fields,
DNS/IP/URL/other SAN syntax, PrintableString serial), template fields beyond the existing table
(and PUT validating like create), issuer fields beyond the existing table, revoke and CRL renew
bodies, deep JSON nesting on every JSON route, non-UTF-8 and duplicate keys, Content-Type
variants, 1 MiB bodies on the routes test_stores.py does not try, paging parameters and malformed
certificate/template ids in paths.
"""

import json

import pytest
from cryptography import x509

from pcadtest import fails, issuer_body, ok, unique
from reliability_helpers import leaf_template

OTHER_OID = {"oid": "1.2.3.4", "type": "UTF8String", "value": "v"}


@pytest.fixture(scope="module")
def ca(admin):
    """A store (CRL on) with EC ROOT > EC INTERMEDIATE, a permissive EC-256 template (IP SANs
    allowed, every URL whitelisted, one other-SAN OID whitelisted) and one VALID leaf."""
    store = admin.create_store(unique("catalogue"), crlActive=True)
    sid = store["caStoreId"]
    root = admin.new_issuer(sid, issuer_body(max_depth=1, ttl=10 * 365 * 86400))
    inter = admin.new_issuer(sid, issuer_body(kind="INTERMEDIATE", parent=root["certId"],
                                              max_depth=0, ttl=5 * 365 * 86400))
    tpl = admin.create_template(sid, leaf_template(inter["certId"], unique("catalogue")) | {
        "allowIpSans": True, "urlSansWhitelist": ["*"],
        "otherSansWhitelist": [{"oid": "1.2.3.4", "type": "UTF8String", "value": "*"}]})
    leaf = admin.issue(sid, tpl["templateId"], good_leaf())
    return {"sid": sid, "store": ok(admin.get(f"/{sid}")), "root": root["certId"],
            "int": inter["certId"], "tid": tpl["templateId"],
            "template": ok(admin.get(f"/{sid}/templates/{tpl['templateId']}")),
            "leaf": leaf["certId"]}


def good_leaf(**extra):
    return {"mode": "GENERATE", "commonName": "catalogue.example.com", "ttlValue": 86400,
            **extra}


def state(admin, ca):
    """Everything a refused request could have changed."""
    sid = ca["sid"]
    crl = admin.get(f"/{sid}/certs/{ca['int']}/crl/der")
    number = x509.load_der_x509_crl(crl.content).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number
    return {
        "stores": admin.store_count(),
        "store": ok(admin.get(f"/{sid}")),
        "certs": admin.cert_count(sid),
        "templates": admin.template_count(sid),
        "template": ok(admin.get(f"/{sid}/templates/{ca['tid']}")),
        "leaf": admin.cert(sid, ca["leaf"])["status"],
        "crlNumber": number,
    }


@pytest.fixture
def unchanged(admin, ca):
    """Asserts, after the test, that nothing the refused requests aimed at was written."""
    before = state(admin, ca)
    yield
    after = state(admin, ca)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}


def test_permissive_template_accepts_the_valid_forms(admin, ca):
    """Positive control: the fields the leaf cases below break are accepted when well-formed."""
    resp = admin.issue(ca["sid"], ca["tid"], good_leaf(
        sans=["a.example.com"], ipSans=["10.1.2.3", "2001:db8::1"],
        urlSans=["https://a.example.com/x", "spiffe://pcad/w"], otherSans=[OTHER_OID],
        serialNumber="AB-12 (x)", excludeCommonNameFromSans=True))
    assert resp["certId"]
    ok(admin.post(f"/{ca['sid']}/certs/{resp['certId']}/revoke", {"reason": "SUPERSEDED"}))


# ---------------------------------------------------------------------------------------------
# Leaf issuance: (id, fields merged into a valid GENERATE request, resultCodes, field named)


def with_date(value):
    return {"ttlValue": KeyError, "specificDate": value}


LEAF_CONSTRAINTS = [
    ("mode-number", {"mode": 1}, 40000, "mode"),
    ("mode-lowercase", {"mode": "generate"}, 40000, "mode"),
    ("commonName-number", {"commonName": 5}, 40000, "commonName"),
    ("commonName-empty", {"commonName": ""}, (40000, 40001), "commonName"),
    ("ttlValue-negative", {"ttlValue": -1}, (40000, 40001), "ttlValue"),
    ("ttlValue-string", {"ttlValue": "3600"}, 40000, "ttlValue"),
    ("ttlValue-fraction", {"ttlValue": 1.5}, 40000, "ttlValue"),
    ("ttlValue-2^64", {"ttlValue": 2**64}, (40000, 40001), "ttlValue"),
    ("specificDate-format", with_date("2030-01-01 00:00:00"), (40000, 40001), "specificDate"),
    ("specificDate-month-13", with_date("2030-13-01T00:00:00"), (40000, 40001), "specificDate"),
    ("specificDate-3000", with_date("3000-01-01T00:00:00"), 40001, "specificDate"),
    ("specificDate-1969", with_date("1969-12-31T23:59:59"), 40001, "specificDate"),
    ("specificDate-number", with_date(1893456000), 40000, "specificDate"),
    ("csr-in-GENERATE", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, (40000, 40001), "csr"),
    ("removeRootsFromChain-in-GENERATE", {"removeRootsFromChain": True}, (40000, 40001),
     "removeRootsFromChain"),
    ("removeRootsFromChain-string", {"removeRootsFromChain": "yes"}, 40000,
     "removeRootsFromChain"),
    ("excludeCommonNameFromSans-string", {"excludeCommonNameFromSans": "yes"}, 40000,
     "excludeCommonNameFromSans"),
    ("serialNumber-not-printable", {"serialNumber": "ab_cd@example"}, 40001, "serialNumber"),
    ("serialNumber-number", {"serialNumber": 12}, 40000, "serialNumber"),
    ("sans-not-a-list", {"sans": "a.example.com"}, 40000, "sans"),
    ("sans-item-number", {"sans": [5]}, 40000, "sans"),
    ("sans-invalid-hostname", {"sans": ["bad host!.example.com"]}, 40001, "sans"),
    ("sans-empty-label", {"sans": ["a..example.com"]}, 40001, "sans"),
    ("ipSans-octet-300", {"ipSans": ["10.0.0.300"]}, 40001, "ipSans"),
    ("ipSans-ipv6-invalid", {"ipSans": ["2001:db8::g"]}, 40001, "ipSans"),
    ("ipSans-hostname", {"ipSans": ["example.com"]}, 40001, "ipSans"),
    ("ipSans-cidr", {"ipSans": ["10.0.0.0/8"]}, 40001, "ipSans"),
    ("urlSans-no-scheme", {"urlSans": ["not a url"]}, 40001, "urlSans"),
    ("urlSans-relative", {"urlSans": ["/relative/path"]}, 40001, "urlSans"),
    ("urlSans-space", {"urlSans": ["https://a.example.com/a b"]}, 40001, "urlSans"),
    ("otherSans-oid-missing", {"otherSans": [{"type": "UTF8String", "value": "v"}]},
     (40000, 40001), "oid"),
    ("otherSans-oid-first-arc-3", {"otherSans": [dict(OTHER_OID, oid="3.1.2")]}, 40001, "oid"),
    ("otherSans-type", {"otherSans": [dict(OTHER_OID, type="Utf9String")]}, (40000, 40001),
     "type"),
    ("otherSans-value-256", {"otherSans": [dict(OTHER_OID, value="v" * 256)]}, 40001, "value"),
    ("otherSans-not-objects", {"otherSans": ["1.2.3.4"]}, 40000, "otherSans"),
]


@pytest.mark.parametrize("fields,codes,field", [c[1:] for c in LEAF_CONSTRAINTS],
                         ids=[c[0] for c in LEAF_CONSTRAINTS])
def test_leaf_request_constraints(admin, ca, unchanged, fields, codes, field):
    body = good_leaf()
    for key, value in fields.items():
        if value is KeyError:
            del body[key]
        else:
            body[key] = value
    reply = admin.post(f"/{ca['sid']}/templates/{ca['tid']}/certificates", body)
    fails(reply, 400, codes, field)


# ---------------------------------------------------------------------------------------------
# Templates: cases beyond test_templates_leaves.py's TEMPLATE_CONSTRAINTS


def subject_field(key, value):
    return {"subjectInfo": {"organization": "pcad tests", "country": "KR", key: value}}


TEMPLATE_CONSTRAINTS = [
    ("name-empty", {"name": ""}, (40000, 40001), "name"),
    ("name-number", {"name": 5}, 40000, "name"),
    ("description-number", {"description": 5}, 40000, "description"),
    ("parentCertId-0", {"parentCertId": 0}, (40000, 40001), "parentCertId"),
    ("parentCertId-negative", {"parentCertId": -3}, (40000, 40001), "parentCertId"),
    ("parentCertId-string", {"parentCertId": "5"}, 40000, "parentCertId"),
    ("maxTTL-string", {"maxTTL": "3600"}, 40000, "maxTTL"),
    ("maxTTL-fraction", {"maxTTL": 1.5}, 40000, "maxTTL"),
    ("maxSpecificDate-format", {"maxTTL": KeyError, "maxSpecificDate": "2030-01-01 00:00:00"},
     (40000, 40001), "maxSpecificDate"),
    ("maxSpecificDate-3000", {"maxTTL": KeyError, "maxSpecificDate": "3000-01-01T00:00:00"},
     40001, "maxSpecificDate"),
    ("maxSpecificDate-1969", {"maxTTL": KeyError, "maxSpecificDate": "1969-12-31T23:59:59"},
     40001, "maxSpecificDate"),
    ("backDateValidation-negative", {"backDateValidation": -1}, (40000, 40001),
     "backDateValidation"),
    ("backDateValidation-string", {"backDateValidation": "30"}, 40000, "backDateValidation"),
    ("keyInfo-DSA", {"keyInfo": {"algorithm": "DSA", "keySize": 2048}}, 40000,
     ("keyInfo", "algorithm")),
    ("keyInfo-algorithm-lowercase", {"keyInfo": {"algorithm": "ec", "keySize": 256}}, 40000,
     ("keyInfo", "algorithm")),
    ("keyInfo-RSA-8192", {"keyInfo": {"algorithm": "RSA", "keySize": 8192},
                          "keyUsage": ["DIGITAL_SIGNATURE"]}, 40001, ("keyInfo", "keySize")),
    ("keyInfo-unknown-field", {"keyInfo": {"algorithm": "EC", "keySize": 256, "curve": "P-256"}},
     (40000, 40001), "curve"),
    ("signatureBits-1024", {"signatureBits": 1024}, 40001, "signatureBits"),
    ("signatureBits-string", {"signatureBits": "256"}, 40000, "signatureBits"),
    ("keyUsage-not-a-list", {"keyUsage": "DIGITAL_SIGNATURE"}, 40000, "keyUsage"),
    ("extendedKeyUsage-lowercase", {"extendedKeyUsage": ["server_authentication"]}, 40000,
     "extendedKeyUsage"),
    ("extendedKeyUsageOids-one-arc", {"extendedKeyUsageOids": ["1"]}, 40001,
     "extendedKeyUsageOids"),
    ("extendedKeyUsageOids-trailing-dot", {"extendedKeyUsageOids": ["1.2.3."]}, 40001,
     "extendedKeyUsageOids"),
    ("policies-first-arc-3", {"policies": ["3.1.2"]}, 40001, "policies"),
    ("urlSansWhitelist-empty-entry", {"urlSansWhitelist": [""]}, 40001, "urlSansWhitelist"),
    ("urlSansWhitelist-space", {"urlSansWhitelist": ["https://a b/*"]}, 40001,
     "urlSansWhitelist"),
    ("otherSansWhitelist-type", {"otherSansWhitelist": [dict(OTHER_OID, type="Utf9String")]},
     (40000, 40001), "type"),
    ("otherSansWhitelist-value-256", {"otherSansWhitelist": [dict(OTHER_OID, value="*" * 256)]},
     40001, "value"),
    ("otherFields-oid", {"otherFields": [dict(OTHER_OID, oid="x")]}, 40001, "oid"),
    ("otherFields-value-256", {"otherFields": [dict(OTHER_OID, value="v" * 256)]}, 40001,
     "value"),
    ("allowIpSans-string", {"allowIpSans": "yes"}, 40000, "allowIpSans"),
    ("storeInServer-number", {"storeInServer": 1}, 40000, "storeInServer"),
    ("stateOrProvince-129", subject_field("stateOrProvince", "s" * 129), 40001,
     "stateOrProvince"),
    ("locality-129", subject_field("locality", "l" * 129), 40001, "locality"),
    ("streetAddress-129", subject_field("streetAddress", "a" * 129), 40001, "streetAddress"),
    ("postalCode-41", subject_field("postalCode", "p" * 41), 40001, "postalCode"),
    ("organizationalUnit-65", subject_field("organizationalUnit", "u" * 65), 40001,
     "organizationalUnit"),
    ("subject-serialNumber-65", subject_field("serialNumber", "s" * 65), 40001, "serialNumber"),
    ("country-digits", subject_field("country", "12"), 40001, "country"),
    ("country-1", subject_field("country", "K"), 40001, "country"),
    ("subjectInfo-unknown-field", subject_field("colour", "red"), (40000, 40001), "colour"),
]


def template_with(ca, fields):
    body = leaf_template(ca["int"], unique("catalogue-tpl"))
    for key, value in fields.items():
        if value is KeyError:
            del body[key]
        else:
            body[key] = value
    return body


@pytest.mark.parametrize("fields,codes,field", [c[1:] for c in TEMPLATE_CONSTRAINTS],
                         ids=[c[0] for c in TEMPLATE_CONSTRAINTS])
def test_template_constraints(admin, ca, unchanged, fields, codes, field):
    fails(admin.post(f"/{ca['sid']}/templates", template_with(ca, fields)), 400, codes, field)


@pytest.mark.parametrize("case", ["name-empty", "maxSpecificDate-3000", "signatureBits-1024",
                                  "policies-first-arc-3", "country-1", "keyInfo-DSA"])
def test_template_put_validates_like_create(admin, ca, unchanged, case):
    fields, codes, field = {c[0]: c[1:] for c in TEMPLATE_CONSTRAINTS}[case]
    body = template_with(ca, fields)
    if "name" not in fields:
        body["name"] = ca["template"]["name"]
    fails(admin.put(f"/{ca['sid']}/templates/{ca['tid']}", body), 400, codes, field)


# ---------------------------------------------------------------------------------------------
# Issuers: cases beyond test_issuers.py's CONSTRAINTS


ISSUER_CONSTRAINTS = [
    ("ttlValue-fraction", {"ttlValue": 1.5}, 40000, "ttlValue"),
    ("ttlValue-2^64", {"ttlValue": 2**64}, (40000, 40001), "ttlValue"),
    ("specificDate-1969", {"ttlValue": KeyError, "specificDate": "1969-12-31T23:59:59"}, 40001,
     "specificDate"),
    ("maxDepth-string", {"maxDepth": "1"}, 40000, "maxDepth"),
    ("description-number", {"description": 5}, 40000, "description"),
    ("keyInfo-algorithm-lowercase", {"keyInfo": {"algorithm": "ec", "keySize": 256}}, 40000,
     ("keyInfo", "algorithm")),
    ("signatureAlgorithm-ED25519-on-RSA", {"keyInfo": {"algorithm": "RSA", "keySize": 2048},
                                           "signatureAlgorithm": "ED25519"}, 40001,
     "signatureAlgorithm"),
    ("signatureAlgorithm-ECDSA-on-ED25519", {"keyInfo": {"algorithm": "ED25519",
                                                         "keySize": 256},
                                             "signatureAlgorithm": "SHA256_WITH_ECDSA"}, 40001,
     "signatureAlgorithm"),
    ("signatureAlgorithm-lowercase", {"signatureAlgorithm": "sha256_with_ecdsa"}, 40000,
     "signatureAlgorithm"),
    ("sans-invalid-hostname", {"sans": ["bad host!.example.com"]}, 40001, "sans"),
    ("ipSans-ipv6-invalid", {"ipSans": ["2001:db8::g"]}, 40001, "ipSans"),
    ("urlSans-relative", {"urlSans": ["/relative"]}, 40001, "urlSans"),
    ("parentCertId-string", {"certificateType": "INTERMEDIATE", "parentCertId": "1"}, 40000,
     "parentCertId"),
]


@pytest.mark.parametrize("fields,codes,field", [c[1:] for c in ISSUER_CONSTRAINTS],
                         ids=[c[0] for c in ISSUER_CONSTRAINTS])
def test_issuer_constraints(admin, ca, unchanged, fields, codes, field):
    body = issuer_body("EC", 256, max_depth=0)
    for key, value in fields.items():
        if value is KeyError:
            del body[key]
        else:
            body[key] = value
    fails(admin.post(f"/{ca['sid']}/certs", body), 400, codes, field)


# ---------------------------------------------------------------------------------------------
# Revoke and CRL renew bodies


REVOKE_BODIES = [
    ("reason-number", json.dumps({"reason": 1}), 40000, "reason"),
    ("reason-lowercase", json.dumps({"reason": "key_compromise"}), 40000, "reason"),
    ("unknown-field", json.dumps({"reason": "SUPERSEDED", "when": "now"}), (40000, 40001),
     "when"),
    ("bare-string", json.dumps("KEY_COMPROMISE"), 40000, ("body", "reason")),
    ("not-json", "reason=SUPERSEDED", 40000, "body"),
    ("truncated", '{"reason": "SUPERSEDED"', 40000, "body"),
]


@pytest.mark.parametrize("data,codes,field", [c[1:] for c in REVOKE_BODIES],
                         ids=[c[0] for c in REVOKE_BODIES])
def test_revoke_bodies(admin, ca, unchanged, data, codes, field):
    fails(admin.call("POST", f"/{ca['sid']}/certs/{ca['leaf']}/revoke", data=data), 400, codes,
          field)


@pytest.mark.parametrize("data", ["false", '"yes"', "{}", "1", "[true]", "true true"],
                         ids=["false", "string", "object", "number", "array", "trailing"])
def test_crl_renew_body_must_be_true(admin, ca, unchanged, data):
    """CRL renew: body `true` (API.md); anything else is refused and no CRL is signed."""
    fails(admin.call("POST", f"/{ca['sid']}/certs/{ca['int']}/crl", data=data), 400,
          (40000, 40001), "body")


# ---------------------------------------------------------------------------------------------
# Malformed JSON on every JSON route


def json_routes(ca):
    sid, tid = ca["sid"], ca["tid"]
    return {
        "create-store": ("POST", ""),
        "put-store": ("PUT", f"/{sid}"),
        "create-cert": ("POST", f"/{sid}/certs"),
        "create-template": ("POST", f"/{sid}/templates"),
        "put-template": ("PUT", f"/{sid}/templates/{tid}"),
        "issue-leaf": ("POST", f"/{sid}/templates/{tid}/certificates"),
        "revoke": ("POST", f"/{sid}/certs/{ca['leaf']}/revoke"),
        "crl-renew": ("POST", f"/{sid}/certs/{ca['int']}/crl"),
    }


ROUTE_IDS = ["create-store", "put-store", "create-cert", "create-template", "put-template",
             "issue-leaf", "revoke", "crl-renew"]
DEPTH = 10_000
DEEP = {
    "arrays": "[" * DEPTH + "]" * DEPTH,
    "objects": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "unclosed": "[" * DEPTH,
    "in-a-field": '{"name": ' + "[" * DEPTH + "]" * DEPTH + "}",
    "depth-200": '{"name": ' + "[" * 200 + "]" * 200 + "}",
}


@pytest.mark.parametrize("shape", list(DEEP))
@pytest.mark.parametrize("route", ROUTE_IDS)
def test_deep_json_nesting(pcad, admin, ca, unchanged, route, shape):
    """10 000 nested `[` / `{`: a 400 40000 envelope (never a crash, a stack overflow or a 500)."""
    method, path = json_routes(ca)[route]
    # A top-level array is read as a struct's fields in order (see test_array_is_not_an_object),
    # so its message names the position `[0]` rather than `body`.
    fails(admin.call(method, path, data=DEEP[shape]), 400, 40000,
          ("body", "[0]", "name", "reason", "mode"))
    assert pcad.daemon.running, pcad.daemon.log_tail()


ARRAYS = {
    # A JSON array holding, in declaration order, a valid value for every field of the body.
    "create-store": lambda ca: ["array-store-" + unique("x"), "d", False, 7, False, 1],
    "put-store": lambda ca: ["array-rename-" + unique("x"), "d", True, 7, False, 1],
    "issue-leaf": lambda ca: ["GENERATE", "array.example.com", 3600] + [None] * 11,
    "revoke": lambda ca: ["KEY_COMPROMISE"],
}


@pytest.mark.parametrize("route", list(ARRAYS))
def test_array_is_not_an_object(admin, ca, route):
    """API.md: a body of the wrong type is 400 40000. A JSON array is not the object the seed
    defines, even when its items line up with the object's fields."""
    method, path = json_routes(ca)[route]
    victim = None
    if route == "revoke":  # a leaf of its own: a wrongly accepted call revokes it
        victim = admin.issue(ca["sid"], ca["tid"], good_leaf())["certId"]
        path = f"/{ca['sid']}/certs/{victim}/revoke"
    before = state(admin, ca)
    reply = admin.call(method, path, data=json.dumps(ARRAYS[route](ca)))
    after = state(admin, ca)
    victim_status = admin.cert(ca["sid"], victim)["status"] if victim else None
    fails(reply, 400, 40000, "body")
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert victim_status in (None, "VALID"), f"the array revoked certificate {victim}"


@pytest.mark.parametrize("route", ROUTE_IDS)
def test_non_utf8_body(admin, ca, route):
    """Bytes that are not UTF-8 are not JSON (RFC 8259 §8.1): 400 40000, nothing written."""
    method, path = json_routes(ca)[route]
    before = state(admin, ca)
    reply = admin.call(method, path, data=b'{"name": "\xff\xfe\xfd"}')
    after = state(admin, ca)
    fails(reply, 400, 40000)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}


@pytest.mark.parametrize("route", ["create-store", "create-template", "issue-leaf"])
def test_duplicate_keys_are_refused_or_harmless(admin, ca, route):
    """RFC 8259 leaves duplicate names open; pcad must not answer 5xx, and a refusal names the
    field and writes nothing."""
    method, path = json_routes(ca)[route]
    body = {"create-store": '{"name": "dup-a", "name": "dup-b"}',
            "create-template": json.dumps(template_with(ca, {}))[:-1] + ', "name": "dup-b"}',
            "issue-leaf": '{"mode": "GENERATE", "commonName": "a.example.com", '
                          '"commonName": "b.example.com", "ttlValue": 3600}'}[route]
    before = state(admin, ca)
    reply = admin.call(method, path, data=body)
    assert reply.status < 500, reply
    if reply.status != 200:
        fails(reply, 400, (40000, 40001), ("name", "commonName"))
        assert state(admin, ca) == before


# ---------------------------------------------------------------------------------------------
# Content types: API.md does not require one for JSON; whatever pcad does, never a 5xx, and a
# refusal writes nothing.


CONTENT_TYPES = [None, "text/plain", "application/x-www-form-urlencoded", "application/xml",
                 "application/json; charset=utf-8", "multipart/form-data; boundary=x"]


@pytest.mark.parametrize("ctype", CONTENT_TYPES, ids=lambda c: str(c).split(";")[0])
@pytest.mark.parametrize("route", ["create-store", "create-template", "issue-leaf"])
def test_content_type_variants(admin, ca, route, ctype):
    method, path = json_routes(ca)[route]
    body = {"create-store": {"name": unique("ctype")},
            "create-template": template_with(ca, {}),
            "issue-leaf": good_leaf()}[route]
    # No Content-Type at all for None (requests drops a header whose value is None).
    headers = {"Content-Type": ctype}
    before = state(admin, ca)
    reply = admin.call(method, path, data=json.dumps(body).encode(), headers=headers)
    assert reply.status < 500, reply
    if reply.status == 200:
        ok(reply)
    else:
        assert reply.status in (400, 415), reply
        assert reply.json and reply.json["header"]["isSuccessful"] is False, reply
        assert reply.json.get("body", "missing") is None, reply
        assert state(admin, ca) == before


def test_form_encoded_body_is_40000(admin, ca, unchanged):
    fails(admin.call("POST", "", data="name=form-store",
                     headers={"Content-Type": "application/x-www-form-urlencoded"}), 400, 40000)


# ---------------------------------------------------------------------------------------------
# Oversized bodies on the routes test_stores.py does not try


@pytest.mark.parametrize("route", ["create-cert", "create-template", "put-template",
                                   "issue-leaf", "revoke", "crl-renew"])
def test_body_over_one_mebibyte_is_413(admin, ca, unchanged, route):
    method, path = json_routes(ca)[route]
    body = json.dumps({"name": "big", "description": "d" * (1 << 20)}).encode()
    fails(admin.send_large(method, path, body), 413, 41300)


# ---------------------------------------------------------------------------------------------
# Query parameters and path ids


LIST_ROUTES = {"stores": "", "certs": "/{sid}/certs", "templates": "/{sid}/templates"}
BAD_PAGING = [("page", "-1"), ("page", "abc"), ("page", "1.5"), ("size", "-1"), ("size", "abc"),
              ("size", "")]


@pytest.mark.parametrize("key,value", BAD_PAGING, ids=[f"{k}={v}" for k, v in BAD_PAGING])
@pytest.mark.parametrize("route", list(LIST_ROUTES))
def test_bad_paging_parameters(admin, ca, route, key, value):
    path = LIST_ROUTES[route].format(sid=ca["sid"])
    reply = admin.get(path, params={key: value})
    if value == "" and reply.status == 200:
        return  # an empty value taken as "not given" is fine
    fails(reply, 400, (40000, 40001), key)


@pytest.mark.parametrize("route", list(LIST_ROUTES))
def test_size_zero(admin, ca, route):
    """API.md: size at most 1000; 0 is either refused naming `size` or clamped to a real size."""
    reply = admin.get(LIST_ROUTES[route].format(sid=ca["sid"]), params={"size": 0})
    if reply.status == 200:
        assert 1 <= ok(reply)["size"] <= 1000, reply
    else:
        fails(reply, 400, (40000, 40001), "size")


BAD_IDS = ["abc", "0", "-1", "+5", "18446744073709551616", "1e3"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("route", ["cert", "download", "revoke", "crl", "template", "issue"])
def test_malformed_ids_in_paths(admin, ca, unchanged, route, bad):
    sid = ca["sid"]
    method, path, names = {
        "cert": ("GET", f"/{sid}/certs/{bad}", ("certId",)),
        "download": ("GET", f"/{sid}/certs/{bad}/download", ("certId",)),
        "revoke": ("POST", f"/{sid}/certs/{bad}/revoke", ("certId",)),
        "crl": ("POST", f"/{sid}/certs/{bad}/crl", ("issuerCertId", "certId")),
        "template": ("GET", f"/{sid}/templates/{bad}", ("templateId",)),
        "issue": ("POST", f"/{sid}/templates/{bad}/certificates", ("templateId",)),
    }[route]
    data = {"revoke": "{}", "crl": "true", "issue": json.dumps(good_leaf())}.get(route)
    reply = admin.call(method, path, data=data)
    assert reply.status in (400, 404), reply
    if reply.status == 400:
        fails(reply, 400, (40000, 40001), names)
    else:
        fails(reply, 404, 40400)
