"""Hardening (issue 11): error answers that do not depend on the protocol or on whether the body
was read, the sign-versus-delete race, connection floods against both listeners, and the input
the probes found.

The flood tests start their own daemons (a 1,024 soft file limit, short timeouts); the rest use
the session daemon of conftest.py.
"""

import base64
import json
import re
import resource
import secrets
import select
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography.x509 import ocsp

import pcadtest
from conftest import PCAD_BIN, free_ports, prepare_config
from pcadtest import Api, fails, issuer_body, ok, unique
from revocation_helpers import build_chain, build_request

REPEAT = 50


# --------------------------------------------------------------------------------------------
# Finding 2: every error answer in the envelope, HTTP/2 and HTTP/1.1, body read or not


def curl_many(pcad, listener, protocol, method, url_glob, outdir, body=None):
    """Every URL of `url_glob` (a curl [1-N] glob), each answer to its own file. Returns
    [(http_code, http_version, exitcode, body bytes)] in order. One curl run reuses one
    connection, except for cleartext HTTP/2: curl 7.88 cannot reuse a prior-knowledge h2c
    connection (a second transfer fails with exit 16 whatever the server), so there each URL
    gets a curl run of its own."""
    if listener == "public" and protocol == "2" and f"[1-{REPEAT}]" in url_glob:
        rows = []
        for i in range(1, REPEAT + 1):
            rows += curl_many(pcad, listener, protocol, method,
                              url_glob.replace(f"[1-{REPEAT}]", str(i)), outdir, body)
        return rows
    args = ["curl", "-s", "-X", method,
            "-o", str(outdir / ("out_#1" if "[" in url_glob else "out_1")),
            "-w", "%{http_code} %{http_version} %{exitcode}\\n"]
    if listener == "api":
        tls = pcad.tls
        args += ["--cacert", tls / "ca.pem", "--cert", tls / "admin.pem", "--key",
                 tls / "admin.key"]
        args.append("--http2" if protocol == "2" else "--http1.1")
    else:
        args.append("--http2-prior-knowledge" if protocol == "2" else "--http1.1")
    if body is not None:
        (outdir / "body").write_bytes(body)
        args += ["--data-binary", f"@{outdir / 'body'}", "-H", "Content-Type: application/json"]
    args.append(url_glob)
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    rows = []
    for i, line in enumerate(proc.stdout.splitlines(), start=1):
        code, version, exitcode = line.split()
        path = outdir / f"out_{i}"
        rows.append((int(code), version, int(exitcode), path.read_bytes() if path.exists() else b""))
        if path.exists():
            path.unlink()
    return rows


# Every route of the management API and of the public listener, as a path under the store.
API_ROUTES = ["", "/certs", "/certs/{c}", "/certs/{c}/download", "/certs/{c}/revoke",
              "/certs/{c}/crl", "/certs/{c}/crl/der", "/certs/{c}/crl/pem", "/templates",
              "/templates/{c}", "/templates/{c}/certificates", "/ocsp"]
PUBLIC_ROUTES = ["/certs/{c}/crl/der", "/certs/{c}/crl/pem", "/ocsp"]
# Over-long paths: 100 kB over HTTP/1.1. HTTP/2 carries the path in a `http::Uri`, which holds at
# most 65,534 bytes: a longer one is refused by the h2 library (REFUSED_STREAM for that stream,
# the connection stays), so HTTP/2 is tested with 60 kB, far over pcad's own 8 KiB limit.
LONG = {"1.1": 100_000, "2": 60_000}


def error_cases(routes, long):
    """(name, route, method, path under the appkey (glob [1-N] inside), body, status)."""
    for route in routes:
        with_id = route.format(c="7")
        # Below `.../ocsp/` everything is an OCSP GET request: POST there is 405.
        # Below `.../certs` and `.../templates` the next segment is an id: 400 there.
        unknown = {"/ocsp": 405, "/certs": 400, "/templates": 400}.get(route, 404)
        yield ("unknown", route, "POST", f"/ca-stores/7{with_id}/nothing[1-{REPEAT}]", b"{}",
               unknown)
        bad = route.format(c=f"x[1-{REPEAT}]") if "{c}" in route else with_id
        store = "7" if "{c}" in route else f"abc[1-{REPEAT}]"
        yield ("bad-id", route, "POST", f"/ca-stores/{store}{bad}", b"{}", 400)
        # A body the server has no reason to read (the path is refused) but must still take.
        yield ("body-unread", route, "POST", f"/ca-stores/{store}{bad}",
               b'{"x": "' + b"y" * 200_000 + b'"}', 400)
        yield ("long-path", route, "POST", f"/ca-stores/7{with_id}/{'a' * long}[1-{REPEAT}]", b"{}",
               414)


@pytest.mark.parametrize("listener", ["api", "public"])
@pytest.mark.parametrize("protocol", ["2", "1.1"])
def test_error_answers_keep_the_envelope(pcad, tmp_path, listener, protocol):
    routes = API_ROUTES if listener == "api" else PUBLIC_ROUTES
    base = pcad.api_url if listener == "api" else pcad.public_url
    failures, total = [], 0
    for name, route, method, path, body, status in error_cases(routes, LONG[protocol]):
        url = f"{base}/v2.0/appkeys/fuzz{path}"
        rows = curl_many(pcad, listener, protocol, method, url, tmp_path, body)
        assert len(rows) == REPEAT, (name, route, rows[:3])
        for code, version, exitcode, content in rows:
            total += 1
            problem = None
            if exitcode != 0:
                problem = f"curl exit {exitcode}"
            elif code != status:
                problem = f"status {code}"
            elif version != protocol:
                problem = f"HTTP/{version}"
            else:
                try:
                    header = json.loads(content)["header"]
                    if header["isSuccessful"] or header["resultCode"] != status * 100:
                        problem = f"envelope {header}"
                except (ValueError, KeyError, TypeError):
                    problem = f"not an envelope: {content[:80]!r}"
            if problem:
                failures.append((name, route, problem))
    print(f"{listener} HTTP/{protocol}: {total} error answers, {len(failures)} wrong")
    assert not failures, sorted(set(failures))[:20]


# --------------------------------------------------------------------------------------------
# Finding 3: signing races the deletion of the store


def test_sign_versus_delete_race_answers_200_or_404(pcad):
    admin = Api(pcad, "admin", f"race-{secrets.token_hex(3)}")
    seen = {}
    for _ in range(20):
        sid = admin.create_store(unique("race"), crlActive=True, crlRefreshPeriod=7,
                                 ocspActive=True, ocspRefreshPeriod=12)["caStoreId"]
        root = admin.create_issuer(sid, issuer_body("EC", 256, max_depth=1))["certId"]
        tpl = admin.create_template(sid, {
            "name": unique("tpl"), "parentCertId": root, "maxTTL": 86400,
            "keyInfo": {"algorithm": "EC", "keySize": 256},
            "keyUsage": ["DIGITAL_SIGNATURE"], "extendedKeyUsage": ["SERVER_AUTHENTICATION"],
            "subjectInfo": {"organization": "pcad tests"}})["templateId"]
        calls = [("POST", f"/{sid}/certs/{root}/crl", None)] * 6 + [
            ("POST", f"/{sid}/templates/{tpl}/certificates",
             {"mode": "GENERATE", "commonName": "race.example.com", "ttlValue": 3600})] * 4 + [
            ("POST", f"/{sid}/certs", issuer_body("EC", 256, kind="INTERMEDIATE", parent=root,
                                                  max_depth=0, ttl=86400))] * 2
        with ThreadPoolExecutor(len(calls) + 1) as pool:
            futures = [pool.submit(admin.call, m, p, json_body=b) for m, p, b in calls]
            time.sleep(0.02)
            deleted = pool.submit(admin.delete, f"/{sid}")
            replies = [f.result() for f in futures]
        ok(deleted.result())
        for reply in replies:
            seen[reply.status] = seen.get(reply.status, 0) + 1
            assert reply.status in (200, 404), reply
            if reply.status == 404:
                fails(reply, 404, 40400, "caStoreId")
    print(f"20 rounds of 12 signing calls racing DELETE: {seen}")


# --------------------------------------------------------------------------------------------
# Finding 1: connection floods


FLOOD = 5000
HEADER_TIMEOUT = 3
IDLE_TIMEOUT = 5


class FloodDaemon:
    """A quickstart daemon of its own, started through `prlimit` with `nofile` as its
    (soft, hard) file limit, and `[limits]` timeouts of a few seconds."""

    def __init__(self, tmp, nofile, extra_limits=""):
        self.dir = tmp / "quickstart"
        self.api_port, self.public_port, metrics = free_ports(3)
        self.metrics_port = metrics
        subprocess.run([str(PCAD_BIN), "quickstart", "--dir", str(self.dir), "--api-port",
                        str(self.api_port), "--public-port", str(self.public_port)],
                       check=True, capture_output=True, timeout=120)
        self.config = self.dir / "pcad.toml"
        prepare_config(self.config, metrics)
        self.config.write_text(self.config.read_text()
                               + f"\n[limits]\nheader_timeout_secs = {HEADER_TIMEOUT}\n"
                               f"idle_timeout_secs = {IDLE_TIMEOUT}\n{extra_limits}")
        self.log = self.dir / "pcad.log"
        self.nofile = nofile
        self.tls = self.dir / "tls"
        self.ca_pem = str(self.tls / "ca.pem")
        self.api_url = f"https://localhost:{self.api_port}"
        self.public_url = f"http://127.0.0.1:{self.public_port}"
        self.proc = None

    def __enter__(self):
        soft, hard = self.nofile
        with open(self.log, "ab") as log:
            # prlimit sets the limits and execs pcad: the pid is pcad's.
            self.proc = subprocess.Popen(
                ["prlimit", f"--nofile={soft}:{hard}", str(PCAD_BIN), "serve", "--config",
                 str(self.config)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pcad exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(f"{self.public_url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"pcad not healthy within 30 s:\n{self.log.read_text()}")
            time.sleep(0.1)

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def client_cert(self, identity):
        return (str(self.tls / "admin.pem"), str(self.tls / "admin.key"))

    def limits(self):
        text = Path(f"/proc/{self.proc.pid}/limits").read_text()
        m = re.search(r"Max open files\s+(\d+)\s+(\d+)", text)
        return int(m.group(1)), int(m.group(2))


def ocsp_target(env):
    """A store with an issuer and a leaf on `env`'s daemon: (OCSP URL, request DER)."""
    admin = Api(env, "admin", "flood")
    sid = admin.create_store(unique("flood"), crlActive=True, crlRefreshPeriod=7,
                             ocspActive=True, ocspRefreshPeriod=12)["caStoreId"]
    chain = build_chain(admin, sid, env.dir, label="flood")
    leaf = chain.issue()
    url = f"{env.public_url}/v2.0/appkeys/flood/ca-stores/{sid}/ocsp"
    return url, build_request(leaf.cert, chain.int_cert)


PARTIAL_HTTP = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
# A TLS record header announcing a 512-byte ClientHello, and only the first bytes of it.
PARTIAL_TLS = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 16


class Closings:
    """Sockets watched from the moment they are opened: records how long each stayed open
    until the server closed it (EOF or reset), in a thread of its own."""

    def __init__(self):
        self.ep = select.epoll()
        self.socks = {}  # fd -> (socket, opened at)
        self.lifetimes = {}  # fd -> seconds, once closed
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, sock):
        sock.setblocking(False)
        with self.lock:
            self.socks[sock.fileno()] = (sock, time.monotonic())
        self.ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)

    def _run(self):
        while not self.stop.is_set():
            for fd, _ in self.ep.poll(0.1):
                now = time.monotonic()
                with self.lock:
                    sock, opened = self.socks[fd]
                closed = False
                try:
                    while True:
                        if not sock.recv(65536):
                            closed = True
                            break
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
                if closed:
                    self.ep.unregister(fd)
                    with self.lock:
                        self.lifetimes[fd] = now - opened

    def wait(self, until):
        while time.monotonic() < until:
            with self.lock:
                if len(self.lifetimes) == len(self.socks):
                    break
            time.sleep(0.1)
        self.stop.set()
        self.thread.join(5)
        with self.lock:
            result = [self.lifetimes.get(fd) for fd in self.socks]
            for sock, _ in self.socks.values():
                sock.close()
        self.ep.close()
        return result


def open_idle(port, count, payload, deadline, closings):
    opened = 0
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(payload)
        except OSError:
            continue
        closings.add(s)
        opened += 1
    return opened


def ocsp_client(url, der, stop, results):
    """OCSP POSTs in a loop, each on a new connection (as relying parties mostly ask): a
    connection kept from before the flood would not show whether new ones get in."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            r = requests.post(url, data=der, timeout=10,
                              headers={"Content-Type": "application/ocsp-request",
                                       "Connection": "close"})
            good = (r.status_code == 200
                    and ocsp.load_der_ocsp_response(r.content).response_status
                    == ocsp.OCSPResponseStatus.SUCCESSFUL)
            results.append((good, time.monotonic() - started, r.status_code))
        except requests.RequestException as e:
            results.append((False, time.monotonic() - started, repr(e)))
        time.sleep(0.02)


def flood(env, label):
    url, der = ocsp_target(env)
    stop, results = threading.Event(), []
    client = threading.Thread(target=ocsp_client, args=(url, der, stop, results), daemon=True)
    client.start()
    started = time.monotonic()
    public_watch, api_watch = Closings(), Closings()
    with ThreadPoolExecutor(2) as pool:
        public = pool.submit(open_idle, env.public_port, FLOOD, PARTIAL_HTTP, started + 60,
                             public_watch)
        api = pool.submit(open_idle, env.api_port, FLOOD, PARTIAL_TLS, started + 60, api_watch)
        public, api = public.result(), api.result()
    opened = time.monotonic() - started
    # Health and the API answer during the flood too.
    health = requests.get(f"{env.public_url}/healthz", timeout=10).status_code
    store_list = Api(env, "admin", "flood").get("", params={"size": 1}, timeout=10).status
    limit = HEADER_TIMEOUT + 3  # scheduling slack on a shared 2-CPU machine
    public_life = public_watch.wait(time.monotonic() + limit + 2)
    api_life = api_watch.wait(time.monotonic() + 2)
    stop.set()
    client.join(15)
    answered = sum(1 for good, _, _ in results if good)
    worst = max((t for _, t, _ in results), default=0)
    lives = public_life + api_life
    still_open = sum(1 for t in lives if t is None)
    slowest = max((t for t in lives if t is not None), default=0)
    print(f"{label}: opened {public} public + {api} API idle connections in {opened:.1f} s; "
          f"OCSP {answered}/{len(results)} answered, slowest {worst * 1000:.0f} ms; idle ones "
          f"closed after at most {slowest:.1f} s (header timeout {HEADER_TIMEOUT} s), "
          f"{still_open} still open; healthz {health}, API {store_list}")
    assert public == FLOOD and api == FLOOD, (public, api)
    assert results and answered == len(results), [r for r in results if not r[0]][:5]
    assert health == 200 and store_list == 200
    assert still_open == 0
    assert slowest <= limit
    return results


def trickled_head_lifetime(port, give_up):
    """Seconds until the server closes a connection that got one answer and then sends the
    next request head one byte a second; None if it is still open after `give_up` seconds."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.settimeout(1)
        started = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
        for byte in head:
            if time.monotonic() - started > give_up:
                return None
            try:
                s.sendall(bytes([byte]))
                if s.recv(65536) == b"":
                    return time.monotonic() - started
            except socket.timeout:
                continue
            except OSError:
                return time.monotonic() - started
        return None
    finally:
        s.close()


@pytest.fixture
def hard_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def test_flood_with_1024_soft_limit(tmp_path, hard_limit):
    """pcad raises the soft file limit to the hard one; 5,000 idle connections on each listener
    are closed by the header timeout while OCSP keeps answering."""
    if hard_limit < 2 * FLOOD + 2048:
        pytest.skip(f"hard file limit {hard_limit} too low for this test process")
    with FloodDaemon(tmp_path, (1024, hard_limit)) as env:
        assert env.limits() == (hard_limit, hard_limit), "soft limit not raised to the hard one"
        flood(env, "soft 1024")
        # A connection that was answered and then says nothing is closed after the idle timeout.
        s = socket.create_connection(("127.0.0.1", env.public_port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        watch = Closings()
        watch.add(s)
        life = watch.wait(time.monotonic() + IDLE_TIMEOUT + 6)[0]
        print(f"keep-alive connection idle after one answer: closed after {life} s")
        assert life is not None and life <= IDLE_TIMEOUT + 4, life
        # One that was answered and then trickles its next request head a byte a second (so it
        # is never idle) is closed by the header timeout.
        lasted = trickled_head_lifetime(env.public_port, HEADER_TIMEOUT + IDLE_TIMEOUT + 20)
        print(f"keep-alive connection trickling a head: closed after {lasted} s")
        assert lasted is not None and lasted <= HEADER_TIMEOUT + 3, lasted
        # The metrics listener has the same timeouts.
        watch = Closings()
        watch.add(socket.create_connection(("127.0.0.1", env.metrics_port), timeout=5))
        life = watch.wait(time.monotonic() + HEADER_TIMEOUT + 6)[0]
        assert life is not None and life <= HEADER_TIMEOUT + 3, life


def test_flood_at_the_connection_cap(tmp_path, hard_limit):
    """With soft and hard limit 1,024 the caps (derived: 230 API, 460 public) are reached: the
    longest-idle connections make room, so OCSP and the API still answer."""
    if hard_limit < 2 * FLOOD + 2048:
        pytest.skip(f"hard file limit {hard_limit} too low for this test process")
    with FloodDaemon(tmp_path, (1024, 1024)) as env:
        assert env.limits() == (1024, 1024)
        flood(env, "soft = hard = 1024")
        log = env.log.read_text(errors="replace")
        assert "up to 230 API and 460 public connections" in log, log[-2000:]


# --------------------------------------------------------------------------------------------
# Findings 4-9: input


@pytest.fixture(scope="module")
def pki(admin, tmp_path_factory):
    """A store with OCSP and CRL on, a ROOT, an INTERMEDIATE, a leaf template and a leaf."""
    sid = admin.create_store(unique("input"), crlActive=True, crlRefreshPeriod=7,
                             ocspActive=True, ocspRefreshPeriod=12)["caStoreId"]
    chain = build_chain(admin, sid, tmp_path_factory.mktemp("hardening"), label="input")
    return {"sid": sid, "chain": chain, "leaf": chain.issue()}


def test_appkey_with_control_characters_is_refused_and_cannot_forge_audit_lines(pcad):
    forged = ("x%0A2026-01-01T00:00:00Z%20INFO%20%20pcad::audit:%20STORE_DELETE%20by%20"
              "pcad-admin%20appkey=prod")
    for appkey in [forged, "x%00y", "x%1B%5B2J", "x%7F", "x%C2%85y"]:
        api = Api(pcad, "admin", appkey)
        fails(api.post("", {"name": "forged"}), 400, 40000, "appkey", "control character")
        fails(api.get(""), 400, 40000, "appkey")
    log = Path(pcad.daemon.log).read_text(errors="replace")
    assert "STORE_DELETE by pcad-admin appkey=prod" not in log
    assert "\x00" not in log


def test_control_characters_are_not_signed(admin, pki):
    sid, chain = pki["sid"], pki["chain"]
    tpl = chain.template["templateId"]
    for cn in ["www.bank.com\u0000.evil.com", "a\u001bb.example.com", "x\u0085.example.com",
               "x\u009f", "tab\there"]:
        body = {"mode": "GENERATE", "commonName": cn, "ttlValue": 3600}
        fails(admin.post(f"/{sid}/templates/{tpl}/certificates", body), 400, 40001,
              "commonName", "control character")
    for field in ["organization", "locality", "organizationalUnit", "streetAddress"]:
        body = issuer_body("EC", 256)
        body["subjectInfo"][field] = "Bank\u0000 Inc"
        fails(admin.post(f"/{sid}/certs", body), 400, 40001, f"subjectInfo.{field}",
              "control character")
    body = issuer_body("EC", 256, otherSans=[{"oid": "1.3.6.1.4.1.311.20.2.3",
                                              "type": "UTF8String", "value": "a\u0000@b"}])
    fails(admin.post(f"/{sid}/certs", body), 400, 40001, "otherSans[0].value",
          "control character")
    # Printable non-ASCII text is still fine.
    ok(admin.post(f"/{sid}/templates/{tpl}/certificates",
                  {"mode": "GENERATE", "commonName": "café.example", "ttlValue": 3600}))


@pytest.mark.parametrize("query,param", [
    ("type=", "type"), ("page=", "page"), ("size=", "size"), ("search=", "search"),
    ("page=0&page=abc", "page"), ("size=5&size=6", "size"), ("type=all&type=leaf", "type"),
])
def test_empty_or_repeated_query_parameters_are_named(admin, pki, query, param):
    path = f"/{pki['sid']}/certs" if param == "type" else ""
    reply = admin.call("GET", f"{path}?{query}")
    message = fails(reply, 400, (40000, 40001), param)
    assert message.startswith(f"{param}:"), message


def test_ids_are_java_longs(admin):
    for big in ["9223372036854775808", "18446744073709551615", "18446744073709551616"]:
        fails(admin.get(f"/{big}"), 400, 40000, "caStoreId")
        fails(admin.get(f"/1/certs/{big}"), 400, 40000, "certId")
        fails(admin.get(f"/1/templates/{big}"), 400, 40000, "templateId")
    fails(admin.get("/9223372036854775807"), 404, 40400)


def test_content_disposition_quotes_and_encodes_the_name(admin, pki):
    sid = pki["sid"]
    name = "web server=1; 서버"
    created = admin.create_issuer(sid, issuer_body("EC", 256, name=name))
    reply = admin.get(f"/{sid}/certs/{created['certId']}/download")
    assert reply.status == 200, reply
    value = reply.headers["Content-Disposition"]
    assert value == ('attachment; filename="web server=1; __.pem"; '
                     "filename*=UTF-8''web%20server%3D1%3B%20%EC%84%9C%EB%B2%84.pem"), value
    crl = admin.get(f"/{sid}/certs/{pki['chain'].int['certId']}/crl/der")
    assert crl.status == 200, crl
    assert re.fullmatch(r'attachment; filename=crl_\d+_\d+\.crl',
                        crl.headers["Content-Disposition"]), crl.headers


def test_if_none_match_is_for_get_only(pcad, appkey, pki):
    chain, leaf = pki["chain"], pki["leaf"]
    der = build_request(leaf.cert, chain.int_cert)
    url = f"{pcad.public_url}/v2.0/appkeys/{appkey}/ca-stores/{pki['sid']}/ocsp"
    first = requests.post(url, data=der, headers={"Content-Type": "application/ocsp-request"},
                          timeout=30)
    assert first.status_code == 200 and first.headers.get("ETag"), first.headers
    etag = first.headers["ETag"]
    again = requests.post(url, data=der, timeout=30,
                          headers={"Content-Type": "application/ocsp-request",
                                   "If-None-Match": etag})
    assert again.status_code == 200, again.status_code
    assert ocsp.load_der_ocsp_response(again.content).response_status == \
        ocsp.OCSPResponseStatus.SUCCESSFUL
    get_url = f"{url}/{requests.utils.quote(base64.b64encode(der).decode(), safe='')}"
    assert requests.get(get_url, timeout=30).status_code == 200
    assert requests.get(get_url, headers={"If-None-Match": etag}, timeout=30).status_code == 304


def test_a_wrong_bearer_token_is_told_so(pcad, appkey):
    api = Api(pcad, None, appkey, headers={"Authorization": "Bearer not-a-configured-token"})
    message = fails(api.get(""), 401, 40100, "not accepted")
    assert "is required" not in message
    fails(Api(pcad, None, appkey).get(""), 401, 40100, "required")


UUID_OID = "2.25.329800735698586629295641978511506172918"
BIG_ARC = "1.3.6.1.4.1.99999.4294967296"


def test_every_x660_oid_is_taken_and_signed(admin, pki, tmp_path):
    """2.999.x, 2.25.<128-bit UUID> and arcs above 2^32-1 in policies, extendedKeyUsageOids,
    otherFields, otherSansWhitelist and otherSans: accepted, and in the certificate exactly as
    OpenSSL encodes them."""
    from revocation_helpers import template_body
    sid, chain = pki["sid"], pki["chain"]
    body = template_body(chain.int["certId"], policies=["2.999.1", UUID_OID],
                         extendedKeyUsageOids=[BIG_ARC, "2.999.7"],
                         otherFields=[{"oid": "2.999.5", "type": "UTF8String", "value": "x"}],
                         otherSansWhitelist=[{"oid": UUID_OID, "type": "UTF8String",
                                              "value": "*"}])
    tpl = admin.create_template(sid, body)
    shown = ok(admin.get(f"/{sid}/templates/{tpl['templateId']}"))
    assert shown["policies"] == ["2.999.1", UUID_OID], shown
    assert shown["extendedKeyUsageOids"] == [BIG_ARC, "2.999.7"], shown
    issued = admin.issue(sid, tpl["templateId"], {
        "mode": "GENERATE", "commonName": "oids.example.com", "ttlValue": 3600,
        "otherSans": [{"oid": UUID_OID, "type": "UTF8String", "value": "uuid-name"}]})
    pem = tmp_path / "leaf.pem"
    pem.write_text(issued["certificate"])
    text = pcadtest.run(["openssl", "x509", "-noout", "-text", "-in", pem]).stdout
    for oid in ["2.999.1", UUID_OID, BIG_ARC, "2.999.7", "2.999.5"]:
        assert oid in text, (oid, text)
    cert = pcadtest.load_pem(issued["certificate"])
    from cryptography.x509.oid import ExtensionOID
    policies = cert.extensions.get_extension_for_oid(ExtensionOID.CERTIFICATE_POLICIES).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.999.1", UUID_OID]
    for bad in ["3.1", "1.40.2", "1.2.03", "2.25.340282366920938463463374607431768211456", "1."]:
        fails(admin.post(f"/{sid}/templates", template_body(chain.int["certId"], policies=[bad])),
              400, 40001, "policies[0]")
