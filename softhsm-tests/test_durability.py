"""Durability: an answered write survives `kill -9` (DESIGN.md: the store flushes before
answering), issuer keys are found again in the token after a restart, and ids never repeat."""

from pcadtest import issuer_body, load_pem, ok, openssl_verify, unique


def test_root_survives_kill_9(pcad, admin):
    store = admin.create_store(unique("durable"), crlActive=True, crlRefreshPeriod=3)
    sid = store["caStoreId"]
    created = admin.create_issuer(sid, issuer_body("EC", 256, max_depth=2, cn="Durable Root"))
    pem = created.get("certificatePem") or admin.cert(sid, created["certId"])["certificatePem"]
    pcad.daemon.kill9()  # right after the 200s: no graceful shutdown, no flush on exit
    pcad.daemon.start()

    assert ok(admin.get(f"/{sid}")) == store
    detail = admin.cert(sid, created["certId"])
    assert detail["serialNumber"] == created["serialNumber"]
    assert detail["certificatePem"].strip() == pem.strip()
    assert detail["notAfter"] == created["notAfter"]
    assert admin.cert_count(sid) == 1

    # The root's key is found again in the token: it can still sign an intermediate.
    child = admin.new_issuer(sid, issuer_body("EC", 384, kind="INTERMEDIATE",
                                              parent=created["certId"], max_depth=0, ttl=86400))
    openssl_verify(child["certificatePem"], detail["certificatePem"])
    assert load_pem(child["certificatePem"]).issuer == \
        load_pem(detail["certificatePem"]).subject


def test_ids_and_serials_never_repeat_after_kill_9(pcad, admin):
    first = admin.create_store(unique("ids-before"))
    root = admin.create_issuer(first["caStoreId"], issuer_body(max_depth=0))
    pcad.daemon.kill9()
    pcad.daemon.start()
    second = admin.create_store(unique("ids-after"))
    assert second["caStoreId"] > first["caStoreId"]
    other = admin.create_issuer(second["caStoreId"], issuer_body(max_depth=0))
    assert other["certId"] > root["certId"]
    assert other["serialNumber"] != root["serialNumber"]


def test_delete_survives_kill_9(pcad, admin):
    store = admin.create_store(unique("deleted-durably"))
    sid = store["caStoreId"]
    admin.create_issuer(sid, issuer_body(max_depth=0))
    ok(admin.delete(f"/{sid}"))
    pcad.daemon.kill9()
    pcad.daemon.start()
    assert admin.get(f"/{sid}").status == 404


def test_graceful_restart_keeps_everything(pcad, admin):
    store = admin.create_store(unique("graceful"))
    sid = store["caStoreId"]
    root = admin.new_issuer(sid, issuer_body("ED25519", 256, max_depth=0))
    pcad.daemon.restart()
    assert admin.cert(sid, root["certId"])["certificatePem"].strip() == \
        root["certificatePem"].strip()
