"""The Debian package and the systemd unit.

Builds the .deb with scripts/build-deb.sh (or takes `PCAD_DEB`), installs it with `dpkg -i`, checks
what it put where, checks the unit with `systemd-analyze` (offline: there is no systemd as PID 1
here, so nothing is started), then `dpkg -r` (the config stays) and `dpkg -P` (it goes). The system
is left as found: the package is purged, and the `pcad` user is deleted again if this test made it.

Independent of the session daemon of conftest.py: plain functions, no `pcad` fixture.
Needs root, dpkg and systemd-analyze; building needs cargo (cargo-deb is installed if missing).
"""

import functools
import gzip
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT_SRC = REPO / "systemd" / "pcad.service"
MAN_SRC = REPO / "packaging" / "pcad.8"
CONFIG_SRC = REPO / "packaging" / "pcad.toml.example"
UNIT = Path("/lib/systemd/system/pcad.service")  # = /usr/lib/systemd/system on merged /usr
CONFIG = Path("/etc/pcad/pcad.toml")
STATE = Path("/var/lib/pcad")
MAN = Path("/usr/share/man/man8/pcad.8.gz")
MAX_EXPOSURE = 2.0
BUILD_TIMEOUT = 3600

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (apt install systemd)",
)


def run(*cmd, check=True, timeout=300, **kw):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    env.update(kw.pop("env", {}))
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                    f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def package_status():
    """dpkg's status of pcad ("install ok installed", "deinstall ok config-files", ...) or ""."""
    proc = run("dpkg-query", "-W", "-f=${Status}", "pcad", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def exposure(unit, env=None):
    """`systemd-analyze security --offline=true` of `unit`: the overall exposure as a float."""
    proc = run("systemd-analyze", "security", "--offline=true", "--no-pager", unit, env=env or {},
               check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\S+)", proc.stdout)
    assert m, f"no 'Overall exposure level' line:\n{proc.stdout}\n{proc.stderr}"
    print(f"systemd-analyze security {unit}: exposure {m.group(1)} {m.group(2)}")
    return float(m.group(1))


def verify(unit, env=None):
    proc = run("systemd-analyze", "verify", unit, env=env or {}, check=False)
    # A clean unit prints nothing; any line is a complaint worth failing on.
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), (
        f"systemd-analyze verify {unit} (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")


# --- the unit in the source tree (no root, no package needed) ----------------------------------


@needs_analyze
def test_unit_in_tree_verifies(tmp_path):
    """The unit as written verifies, given a real ExecStart binary and the man page it names."""
    binary = Path(os.environ.get("PCAD_BIN", REPO / "target" / "release" / "pcad"))
    if not binary.exists():
        pytest.skip(f"{binary} not built (cargo build --release)")
    unit = tmp_path / "pcad.service"
    text = UNIT_SRC.read_text()
    assert "ExecStart=/usr/bin/pcad serve --config /etc/pcad/pcad.toml\n" in text
    unit.write_text(text.replace("ExecStart=/usr/bin/pcad ", f"ExecStart={binary.resolve()} "))
    (tmp_path / "man" / "man8").mkdir(parents=True)
    shutil.copy(MAN_SRC, tmp_path / "man" / "man8" / "pcad.8")
    verify(unit, env={"MANPATH": str(tmp_path / "man")})


@needs_analyze
def test_unit_in_tree_exposure():
    assert exposure(UNIT_SRC) <= MAX_EXPOSURE


def test_unit_has_no_watchdog_and_no_pin():
    """pcad sends no WATCHDOG=1 yet; the PIN comes as a credential, never in the unit."""
    text = UNIT_SRC.read_text()
    directives = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert not any(l.startswith("WatchdogSec=") for l in directives)
    assert "LoadCredential=hsm-pin:/etc/pcad/hsm-pin" in directives
    assert not any("PIN" in l.upper() and l.startswith("Environment") for l in directives)


def test_unit_sets_the_open_file_limit():
    """The unit sets LimitNOFILE= (pcad may not raise it itself under ~@resources) high enough
    for the connection caps pcad derives from it."""
    text = UNIT_SRC.read_text()
    values = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("LimitNOFILE=")]
    assert len(values) == 1, values
    soft, _, hard = values[0].partition(":")
    assert int(soft) >= 16384, values
    assert not hard or int(hard) >= int(soft), values


def test_man_page_renders():
    if shutil.which("groff") is None:
        pytest.skip("groff not installed")
    proc = run("groff", "-man", "-ww", "-z", MAN_SRC)
    assert not proc.stderr.strip(), proc.stderr


@needs_analyze
def test_sandbox_allows_what_pcad_does(tmp_path):
    """pcad on a SoftHSM token, traced with strace from start through key generation, signing,
    SIGHUP and SIGTERM: every system call it makes is inside the unit's
    `SystemCallFilter=@system-service ~@privileged @resources`, and it never maps memory both
    writable and executable (`MemoryDenyWriteExecute=yes`). There is no systemd as PID 1 here to
    start the unit itself, so this is how the sandbox is checked against the real program."""
    import signal
    import socket
    import time
    import types

    import pcadtest

    binary = Path(os.environ.get("PCAD_BIN", REPO / "target" / "release" / "pcad")).resolve()
    module = Path(os.environ.get("PCAD_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"))
    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    if not binary.exists() or not module.exists():
        pytest.skip(f"needs {binary} and {module}")
    socks = [socket.socket() for _ in range(3)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    api_port, public_port, metrics_port = (s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    qs = tmp_path / "qs"
    run(binary, "quickstart", "--dir", qs, "--api-port", api_port, "--public-port", public_port,
        "--module", module, timeout=120)
    # The PIN as the unit passes it: a credential, not pin_file.
    creds = tmp_path / "creds"
    creds.mkdir()
    shutil.copy(qs / "hsm-pin", creds / "hsm-pin")
    (creds / "hsm-pin").chmod(0o400)
    config = qs / "pcad.toml"
    text = re.sub(r'(?m)^pin_file = .*$', "", config.read_text())
    text = re.sub(r'(?ms)(^\[metrics\]\s*$.*?^listen\s*=\s*)"[^"]*"',
                  rf'\g<1>"127.0.0.1:{metrics_port}"', text, count=1)
    assert f"127.0.0.1:{metrics_port}" in text
    config.write_text(text)

    trace = tmp_path / "trace"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=all", "-o", str(trace), str(binary), "serve",
         "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, CREDENTIALS_DIRECTORY=str(creds)),
        preexec_fn=lambda: os.umask(0o027),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", public_port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    (tmp_path / "serve.log").read_text())
                time.sleep(0.2)
        # The API listener is bound before the public one: both are up now.
        env = types.SimpleNamespace(
            api_url=f"https://localhost:{api_port}", api_port=api_port,
            ca_pem=str(qs / "tls" / "ca.pem"),
            client_cert=lambda _: (str(qs / "tls" / "admin.pem"), str(qs / "tls" / "admin.key")))
        api = pcadtest.Api(env, "admin", "sandbox")
        sid = api.create_store("sandbox")["caStoreId"]
        for alg, size, sig in [("RSA", 2048, "SHA256_WITH_RSA"), ("EC", 256, "SHA256_WITH_ECDSA"),
                               ("ED25519", 256, "ED25519")]:
            api.create_issuer(sid, pcadtest.issuer_body(alg, size, sig))
        pid = _traced_pid(trace, binary)
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        os.kill(pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    allowed = (_syscall_set("@system-service") - _syscall_set("@privileged")
               - _syscall_set("@resources"))
    used = set()
    wx = []
    for line in trace.read_text().splitlines():
        m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]", line)
        if m and not line.split(None, 1)[1].startswith(("---", "+++")):
            used.add(m.group(1))
        if re.search(r"PROT_WRITE\|PROT_EXEC|mprotect\(.*PROT_EXEC", line):
            wx.append(line)
    print(f"pcad made {len(used)} distinct system calls, all inside the filter")
    assert not (used - allowed), f"outside the unit's SystemCallFilter: {sorted(used - allowed)}"
    assert not wx, wx[:5]
    assert "reloaded TLS material" in (tmp_path / "serve.log").read_text()


def _traced_pid(trace, binary):
    for line in trace.read_text().splitlines():
        if f'execve("{binary}"' in line:
            return int(line.split()[0])
    raise AssertionError("pcad's execve not in the trace")


@functools.lru_cache(maxsize=None)
def _syscall_groups():
    """`systemd-analyze syscall-filter`: group name -> its entries (calls and nested groups)."""
    groups, name = {}, None
    for line in run("systemd-analyze", "syscall-filter", "--no-pager").stdout.splitlines():
        if line.startswith("@"):
            name = line.split()[0]
            groups[name] = []
        elif name and line.strip() and not line.strip().startswith("#"):
            groups[name].append(line.split()[0])
    return groups


def _syscall_set(group):
    """The system calls of a syscall-filter group, nested groups expanded."""
    result = set()
    for item in _syscall_groups()[group]:
        result |= _syscall_set(item) if item.startswith("@") else {item}
    return result


# --- the package, installed ----------------------------------------------------------------------


def _skip_reason():
    if os.geteuid() != 0:
        return "installing a .deb needs root"
    for tool in ("dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze"):
        if shutil.which(tool) is None:
            return f"{tool} not found (not a Debian system?)"
    if not os.environ.get("PCAD_DEB") and shutil.which("cargo") is None:
        return "cargo not found and PCAD_DEB not set: cannot build the .deb"
    return None


def _pristine_leftover():
    """True when a pcad package already on the machine is an untouched leftover of this test."""
    if (STATE / "db").exists() or Path("/etc/pcad/hsm-pin").exists():
        return False
    if CONFIG.exists() and CONFIG.read_bytes() != CONFIG_SRC.read_bytes():
        return False
    return True


@pytest.fixture(scope="module")
def deb():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    status = package_status()
    if status and not status.endswith("not-installed"):
        if not _pristine_leftover():
            pytest.skip(f"a configured pcad package is installed here ({status}); "
                        "this test would purge it: run it on a scratch machine")
        run("dpkg", "--purge", "pcad")
    user_existed = _user_exists()
    path = os.environ.get("PCAD_DEB")
    if not path:
        proc = run(REPO / "scripts" / "build-deb.sh", timeout=BUILD_TIMEOUT, cwd=REPO)
        path = proc.stdout.strip().splitlines()[-1]
    path = Path(path)
    assert path.is_file() and path.suffix == ".deb", path
    print(f"package: {path}")
    run("dpkg", "-i", path)
    try:
        yield path
    finally:
        run("dpkg", "--purge", "pcad", check=False)
        if not user_existed and _user_exists():
            run("deluser", "--system", "--quiet", "pcad", check=False)
            run("delgroup", "--system", "--quiet", "--only-if-empty", "pcad", check=False)


def _user_exists():
    try:
        pwd.getpwnam("pcad")
        return True
    except KeyError:
        return False


def test_control_fields(deb):
    fields = run("dpkg-deb", "-f", deb, "Depends", "Recommends").stdout
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    for name in ("libc6", "libssl3", "adduser"):
        assert re.search(rf"(^|, ){name}\b", depends), depends
    assert re.search(r"^Recommends: .*\bsofthsm2\b", fields, re.M), fields


def test_binary_runs(deb):
    out = run("/usr/bin/pcad", "--version").stdout
    assert re.fullmatch(r"pcad \d+\.\d+\.\d+\S*\n", out), out


def test_system_user(deb):
    user = pwd.getpwnam("pcad")
    assert grp.getgrgid(user.pw_gid).gr_name == "pcad"
    assert user.pw_dir == "/var/lib/pcad"
    assert user.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"), user.pw_shell
    assert user.pw_uid < 1000, "not a system user"
    try:
        softhsm = grp.getgrnam("softhsm")
    except KeyError:
        return
    assert "pcad" in softhsm.gr_mem, "pcad is not in the softhsm group"


def test_config_is_a_private_conffile(deb):
    st = CONFIG.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)
    assert st.st_uid == 0
    assert grp.getgrgid(st.st_gid).gr_name == "pcad"
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "pcad").stdout
    assert str(CONFIG) in conffiles
    text = CONFIG.read_text()
    assert 'path = "/var/lib/pcad/db"' in text
    assert 'cert = "/etc/pcad/tls/server.pem"' in text
    assert re.search(r"^#pin_file", text, re.M) and "LoadCredential=hsm-pin" in text
    tls = Path("/etc/pcad/tls").stat()
    assert stat.S_IMODE(tls.st_mode) == 0o750 and grp.getgrgid(tls.st_gid).gr_name == "pcad"


def test_config_parses_as_the_pcad_user(deb):
    """The shipped config is valid TOML with only known keys: pcad gets as far as the (absent)
    TLS material, reading the file through its group."""
    proc = run("setpriv", "--reuid=pcad", "--regid=pcad", "--init-groups", "/usr/bin/pcad",
               "check-config", "--config", CONFIG, check=False)
    assert proc.returncode == 1
    assert "/etc/pcad/tls/server" in proc.stderr, proc.stderr
    assert "cannot read config" not in proc.stderr and "config /etc" not in proc.stderr, proc.stderr


def test_state_directory(deb):
    st = STATE.stat()
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o750, oct(st.st_mode)
    assert pwd.getpwuid(st.st_uid).pw_name == "pcad"
    assert grp.getgrgid(st.st_gid).gr_name == "pcad"


def test_man_page(deb):
    text = gzip.decompress(MAN.read_bytes()).decode()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "FILES", "SIGNALS",
                    "ENVIRONMENT", "SEE ALSO"):
        assert f".SH {section}\n" in text, section
    if shutil.which("man"):
        assert run("man", "-w", "8", "pcad").stdout.strip() == str(MAN)


def test_unit_installed(deb):
    assert UNIT.is_file()
    assert UNIT.read_text() == UNIT_SRC.read_text()
    owner = run("dpkg", "-S", "pcad.service").stdout
    assert owner.startswith("pcad: "), owner


def test_installed_unit_verifies(deb):
    verify(UNIT)


def test_installed_unit_exposure(deb):
    assert exposure(UNIT) <= MAX_EXPOSURE


def test_reinstall_keeps_edited_config(deb):
    """An upgrade (here: the same package again) keeps a locally edited conffile and its mode."""
    text = CONFIG.read_text()
    edited = text.replace('listen = "127.0.0.1:8443"', 'listen = "0.0.0.0:8443"')
    assert edited != text
    CONFIG.write_text(edited)
    try:
        run("dpkg", "-i", "--force-confold", deb)
        assert CONFIG.read_text() == edited
        st = CONFIG.stat()
        assert stat.S_IMODE(st.st_mode) == 0o640 and grp.getgrgid(st.st_gid).gr_name == "pcad"
    finally:
        CONFIG.write_text(text)


def test_remove_keeps_config_purge_deletes_it(deb):
    run("dpkg", "-r", "pcad")
    assert package_status() == "deinstall ok config-files"
    assert not Path("/usr/bin/pcad").exists()
    assert not UNIT.exists()
    assert CONFIG.is_file(), "dpkg -r must keep the conffile"
    run("dpkg", "-P", "pcad")
    assert package_status() in ("", "unknown ok not-installed")
    assert not CONFIG.exists(), "dpkg -P must delete the conffile"
    assert not Path("/etc/pcad").exists()
    assert not STATE.exists(), "an empty state folder is removed on purge"
