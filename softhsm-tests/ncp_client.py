"""A client of pcad's NAVER Cloud edition (`/api/v1`) that signs requests as NCP's SDKs do:

    signature = Base64(HMAC-SHA256(secret, METHOD + " " + request-target + "\\n" + ts + "\\n" + accessKey))

sent as `x-ncp-apigw-signature-v2` (the docs) or `-v1` (the Go SDK behind ncloud-pca-issuer),
plus the fixture that runs a daemon of its own (short destroy delay, extra NCP keys).
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path

import requests

import pcadtest
from conftest import PCAD_BIN, Daemon, free_ports, prepare_config


def signature(secret, method, target, ts, access_key):
    msg = f"{method} {target}\n{ts}\n{access_key}".encode()
    return base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


class Ncp:
    """Signed calls for one access key. `header` picks the signature header name."""

    def __init__(self, env, access_key, secret, header="x-ncp-apigw-signature-v2"):
        self.env = env
        self.access_key = access_key
        self.secret = secret
        self.header = header

    def with_header(self, header):
        return Ncp(self.env, self.access_key, self.secret, header)

    def call(self, method, target, body=None, *, ts=None, secret=None, raw=None, headers=None,
             sign=True):
        ts = str(int(time.time() * 1000)) if ts is None else str(ts)
        hdrs = {"Content-Type": "application/json"}
        if sign:
            hdrs.update({
                "x-ncp-apigw-timestamp": ts,
                "x-ncp-iam-access-key": self.access_key,
                self.header: signature(secret or self.secret, method, target, ts, self.access_key),
            })
        hdrs.update(headers or {})
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        r = requests.request(method, self.env.api_url + target, data=data, headers=hdrs,
                             verify=self.env.ca_pem, timeout=120)
        try:
            r.body = r.json()
        except ValueError:
            r.body = None
        return r

    def get(self, target, **kw):
        return self.call("GET", target, **kw)

    def post(self, target, body=None, **kw):
        return self.call("POST", target, body, **kw)

    def put(self, target, body=None, **kw):
        return self.call("PUT", target, body, **kw)

    def delete(self, target, **kw):
        return self.call("DELETE", target, **kw)

    # ---- helpers -------------------------------------------------------------------------

    def ok(self, r):
        assert r.status_code == 200, (r.status_code, r.text)
        assert r.body["code"] == "SUCCESS" and r.body["msg"] == "Success", r.text
        return r.body["data"]

    def create_ca(self, alias, key="EC256", period="3650", ca_type="PRIVATE_ROOT", issuer=None,
                  **x509):
        q = f"/api/v1/ca?caType={ca_type}" + (f"&issuerTag={issuer}" if issuer else "")
        body = {"alias": alias, "keyType": key, "period": period, "memo": "test",
                "x509Parameters": {"commonName": x509.pop("cn", f"{alias} CA"), "country": "KR",
                                   "organization": "pcad tests", **x509}}
        return self.ok(self.post(q, body))


def fails(r, status, code=None, *words):
    """An NCP service error: HTTP status, `{code,msg,data:null}`, words in msg."""
    assert r.status_code == status, (r.status_code, r.text)
    assert set(r.body) == {"code", "msg", "data"}, r.text
    assert r.body["data"] is None
    if code:
        assert r.body["code"] == code, r.text
    for w in words:
        assert w.lower() in r.body["msg"].lower(), (w, r.text)
    return r.body


def gateway(r, code):
    """The gateway's 401 shape."""
    assert r.status_code == 401, (r.status_code, r.text)
    msg = {"200": "Authentication Failed", "210": "Permission Denied"}[code]
    assert r.body == {"error": {"errorCode": code, "message": msg}}, r.text


class NcpEnv:
    """A daemon of its own: quickstart + `[ncp] destroy_delay` + extra keys."""

    def __init__(self, directory, api_port, public_port, metrics_port):
        self.dir = directory
        self.api_port, self.public_port = api_port, public_port
        self.api_url = f"https://localhost:{api_port}"
        self.public_url = f"http://127.0.0.1:{public_port}"
        self.ca_pem = str(directory / "tls" / "ca.pem")
        self.tls = directory / "tls"
        self.config = directory / "pcad.toml"
        self.softhsm_conf = directory / "softhsm2.conf"
        self.daemon = Daemon(self.config, directory / "pcad.log", api_port, public_port)

    def pin(self):
        return (self.dir / "hsm-pin").read_text().strip()

    def client_cert(self, identity):
        name = {"admin": "admin", "viewer": "viewer"}[identity]
        return (str(self.tls / f"{name}.pem"), str(self.tls / f"{name}.key"))

    def key(self, name):
        """`Ncp` for a quickstart key (`admin`, `viewer`) or an extra one."""
        d = self.dir / "ncp"
        return Ncp(self, (d / f"{name}.access-key").read_text().strip(),
                   (d / f"{name}.secret-key").read_text().strip())

    def v2(self, identity="admin", appkey="demo"):
        return pcadtest.Api(self, identity, appkey)


EXTRA_KEYS = [("viewer2", "demo", "VIEWER"), ("other", "tenant-x", "ADMIN")]


def start_env(tmp_path, destroy_delay="4s"):
    directory = tmp_path / "quickstart"
    api_port, public_port, metrics_port = free_ports(3)
    proc = subprocess.run(
        [str(PCAD_BIN), "quickstart", "--dir", str(directory), "--api-port", str(api_port),
         "--public-port", str(public_port)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    config = directory / "pcad.toml"
    prepare_config(config, metrics_port)
    text = config.read_text()
    for name, appkey, role in EXTRA_KEYS:
        access = os.urandom(10).hex().upper()
        (directory / "ncp" / f"{name}.access-key").write_text(access + "\n")
        secret = directory / "ncp" / f"{name}.secret-key"
        secret.write_text(os.urandom(20).hex() + "\n")
        os.chmod(secret, 0o600)
        text += (f'\n[[ncp_keys]]\naccess_key = "{access}"\nsecret_file = "ncp/{name}.secret-key"\n'
                 f'appkey = "{appkey}"\nrole = "{role}"\nidentity = "ncp-{name}"\n')
    text += f'\n[ncp]\ndestroy_delay = "{destroy_delay}"\n'
    config.write_text(text)
    env = NcpEnv(directory, api_port, public_port, metrics_port)
    env.daemon.start()
    return env
