"""ACME with lego (Debian package): http-01, dns-01 (TXT records set in `pebble-challtestsrv`,
the DNS server of `[acme] resolver`, by lego's exec provider) and tls-alpn-01."""

import os
import stat

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

import pcadtest
from acme_helpers import env  # noqa: F401 (fixture)
from pcadtest import ok


def lego(env, tmp_path, domains, challenge_args, extra_env=None):
    token = env.token(name="lego")
    args = ["lego", "--server", env.directory(), "--accept-tos", "--email", "ops@acme.test",
            "--eab", "--kid", token["tokenId"], "--hmac", token["hmacKey"],
            "--path", tmp_path / "lego", "--key-type", "ec256", *challenge_args]
    for d in domains:
        args += ["--domains", d]
    run_env = dict(os.environ, LEGO_CA_CERTIFICATES=env.pcad.ca_pem, **(extra_env or {}))
    pcadtest.run(args + ["run"], env=run_env, timeout=400)
    name = domains[0].replace("*", "_")
    pem = (tmp_path / "lego" / "certificates" / f"{name}.crt").read_text()
    return token, pem


def check(env, pem, domains):
    leaf_pem, *chain = pcadtest.split_pems(pem)
    cert = x509.load_pem_x509_certificate(leaf_pem.encode())
    sans = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(domains)
    pcadtest.openssl_verify(leaf_pem, env.root["certificatePem"], chain)
    findings = pcadtest.pkilint_findings(leaf_pem)
    # RFC 5280 defines no wildcards, so pkilint's PKIX linter calls `*.` names invalid syntax;
    # that is the only finding a wildcard certificate may have.
    assert [f for f in findings
            if not (f["code"] == "pkix.invalid_domain_name_syntax"
                    and any(d.startswith("*.") for d in domains))] == [], findings
    return cert


def test_lego_http01(env, tmp_path):
    domains = ["lego-http.apps.acme.test", "api.acme.test"]
    token, pem = lego(env, tmp_path, domains,
                      ["--http", "--http.port", f"127.0.0.1:{env.http_port}"])
    check(env, pem, domains)
    # The token's list shows the account it bound.
    items = ok(env.admin.get(f"/{env.sid}/certs/{env.base['certId']}/acme-tokens"))["items"]
    mine = next(i for i in items if i["tokenId"] == token["tokenId"])
    assert "/acme/v2.0/cert/" in mine["accountUrl"] and "/acct/" in mine["accountUrl"]


def test_lego_dns01_wildcard(env, tmp_path):
    script = tmp_path / "set-txt.sh"
    script.write_text(
        "#!/bin/sh\n"
        "# lego exec provider: $1 = present|cleanup, $2 = FQDN, $3 = value\n"
        f'MGMT="{env.dns.mgmt}"\n'
        'if [ "$1" = present ]; then\n'
        '  curl -sf -X POST -d "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" "$MGMT/set-txt"\n'
        'elif [ "$1" = cleanup ]; then\n'
        '  curl -sf -X POST -d "{\\"host\\":\\"$2\\"}" "$MGMT/clear-txt"\n'
        "fi\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    domains = ["*.apps.acme.test"]
    _, pem = lego(env, tmp_path, domains,
                  ["--dns", "exec", "--dns.disable-cp",
                   "--dns.resolvers", f"127.0.0.1:{env.dns.dns_port}"],
                  {"EXEC_PATH": str(script), "EXEC_PROPAGATION_TIMEOUT": "30",
                   "EXEC_POLLING_INTERVAL": "1"})
    check(env, pem, domains)


def test_lego_tls_alpn01(env, tmp_path):
    domains = ["lego-tls.apps.acme.test"]
    _, pem = lego(env, tmp_path, domains, ["--tls", "--tls.port", f"127.0.0.1:{env.tls_port}"])
    check(env, pem, domains)
