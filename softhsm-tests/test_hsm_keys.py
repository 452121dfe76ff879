"""Issuer keys live in the token: seen through an independent PKCS#11 client (OpenSC
`pkcs11-tool`), every private key is sensitive, never extractable and private; deleting a store
destroys its keys; a rejected issuance leaves no key behind; the PIN never shows."""

import os

from pcadtest import SOFTHSM_MODULE, fails, issuer_body, ok, run, token_objects, unique


def ids(objects):
    return {o["ID"] for o in objects}


def test_every_private_key_is_sensitive_and_never_extractable(pcad, issuer_set):
    keys = token_objects(pcad, "privkey")
    issuers = len(issuer_set["roots"]) + len(issuer_set["intermediates"])
    assert len(keys) >= issuers, f"{len(keys)} private keys on the token for {issuers} issuers"
    for key in keys:
        access = key["Access"]
        assert "sensitive" in access, key
        assert "never extractable" in access, key
        assert "extractable" not in access, key
        assert "sign" in key.get("Usage", ""), key
        # DESIGN.md: random 16-20 byte CKA_ID.
        assert 32 <= len(key["ID"]) <= 40, key
    types = [k["type"].split()[0] for k in keys]
    assert types.count("RSA") >= 4  # 3 roots + 1 intermediate
    assert types.count("EC") >= 7  # EC 224/256/384/521 + ECDSA 256 roots + 2 intermediates
    assert types.count("EC_EDWARDS") >= 3  # 1 root + 2 intermediates


def test_private_keys_need_a_login(pcad, issuer_set):
    env = dict(os.environ, SOFTHSM2_CONF=str(pcad.softhsm_conf))
    out = run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", "pcad",
               "--list-objects", "--type", "privkey"], env=env, check=False)
    assert "Private Key Object" not in out.stdout, "issuer keys must be CKA_PRIVATE"


def test_deleting_a_store_destroys_its_keys(pcad, admin):
    before = token_objects(pcad, "privkey")
    store = admin.create_store(unique("hsm-lifecycle"))
    sid = store["caStoreId"]
    root = admin.create_issuer(sid, issuer_body("EC", 256, max_depth=1))
    admin.create_issuer(sid, issuer_body("ED25519", 256, max_depth=0))
    admin.create_issuer(sid, issuer_body("EC", 384, kind="INTERMEDIATE", parent=root["certId"],
                                         max_depth=0, ttl=86400))
    during = token_objects(pcad, "privkey")
    new = ids(during) - ids(before)
    assert len(new) == 3, f"expected 3 new private keys, got {sorted(new)}"
    assert ids(before) <= ids(during)
    assert sorted(o["type"].split()[0] for o in during if o["ID"] in new) == \
        ["EC", "EC", "EC_EDWARDS"]

    ok(admin.delete(f"/{sid}"))
    after = token_objects(pcad, "privkey")
    assert ids(after) == ids(before), "deleting the store must destroy exactly its keys"
    assert not new & ids(token_objects(pcad, "pubkey")), "public key objects left behind"


def test_rejected_issuance_leaves_no_key(pcad, admin):
    store = admin.create_store(unique("hsm-rejected"))
    sid = store["caStoreId"]
    depth0 = admin.create_issuer(sid, issuer_body(max_depth=0, ttl=2 * 86400))
    short = admin.create_issuer(sid, issuer_body(max_depth=1, ttl=2 * 86400))
    before = ids(token_objects(pcad, "privkey"))
    # A state conflict (maxDepth 0) and a broken lifetime (outlives the parent) are detected
    # after parsing: no key may be left in the token for them.
    fails(admin.post(f"/{sid}/certs", issuer_body(kind="INTERMEDIATE", parent=depth0["certId"],
                                                   max_depth=0, ttl=86400)), 409, 40900)
    fails(admin.post(f"/{sid}/certs", issuer_body("RSA", 2048, kind="INTERMEDIATE",
                                                   parent=short["certId"], max_depth=0,
                                                   ttl=5 * 86400)), 400, 40001)
    fails(admin.post(f"/{sid}/certs", issuer_body("RSA", 1024)), 400, 40001)
    assert ids(token_objects(pcad, "privkey")) == before


def test_pin_is_never_on_a_command_line_or_in_the_log(pcad, issuer_set):
    pin = pcad.pin()
    assert len(pin) >= 4
    cmdline = open(f"/proc/{pcad.daemon.pid}/cmdline", "rb").read().replace(b"\0", b" ")
    assert pin.encode() not in cmdline
    assert b"serve" in cmdline
    assert pin not in pcad.daemon.log.read_text(errors="replace")
    assert pin not in pcad.quickstart_output
