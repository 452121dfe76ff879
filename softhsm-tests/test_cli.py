"""The command line an operator meets first (issue #12, item 4): every option described,
`--version`, help naming pcad(8) and the example config, and `scripts/demo.sh`'s closing text
saying what runs and what to try next, with a pcad that exists."""

import os
import re
import shlex
import signal
import subprocess
import time

import conftest
from conftest import PCAD_BIN, REPO
from pcadtest import run

COMMANDS = [[], ["serve"], ["quickstart"], ["quickstart", "add-client"], ["check-config"],
            ["backup"], ["restore"], ["backup-check"]]


def help_of(args):
    return run([PCAD_BIN, *args, "--help"]).stdout


def test_version():
    out = run([PCAD_BIN, "--version"]).stdout
    assert re.fullmatch(r"pcad \d+\.\d+\.\d+\n", out), out


def test_every_command_and_option_is_described_and_help_points_to_the_manual():
    for args in COMMANDS:
        text = help_of(args)
        assert "pcad(8)" in text and "pcad.toml.example" in text, (args, text)
        # Every line of the Options/Commands/Arguments lists has a description after its name.
        section = False
        for line in text.splitlines():
            if line in ("Options:", "Commands:", "Arguments:"):
                section = True
            elif not line.strip():
                section = False
            elif section:
                parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
                assert len(parts) == 2 and len(parts[1]) > 8, (args, line)
    for args in COMMANDS[1:]:
        assert not help_of(args).startswith("Usage"), f"{args} has no description"


def test_demo_script_says_what_runs_and_what_to_try(tmp_path):
    """scripts/demo.sh on a folder quickstart made with free ports (no fixed ports here)."""
    directory = tmp_path / "demo"
    api_port, public_port = conftest.free_ports(2)
    run([PCAD_BIN, "quickstart", "--dir", directory, "--api-port", api_port, "--public-port",
         public_port])
    conftest.prepare_config(directory / "pcad.toml", conftest.free_ports(1)[0])
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(REPO / "scripts" / "demo.sh")], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PCAD_DEMO_DIR": str(directory)})
    try:
        deadline = time.monotonic() + 600  # includes an incremental `cargo build`
        while "Manual:" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert "Run it: pcad serve" not in text and "Run it:" not in text
        pid = int(re.search(r"pcad is running \(pid (\d+)\)", text).group(1))
        os.kill(pid, 0)
        assert f"https://localhost:{api_port}" in text and f"http://127.0.0.1:{public_port}" in text
        assert "Ctrl-C stops pcad" in text and "Trying it" in text
        curl = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
        assert len(curl) == 1, text
        reply = run(shlex.split(curl[0]) + ["-sS", "--fail-with-body"]).stdout
        assert '"isSuccessful":true' in reply, reply
        add = [line for line in text.splitlines() if "quickstart add-client" in line]
        binary = shlex.split(add[0].split(":", 1)[1])[0]
        assert os.path.isfile(binary) and os.access(binary, os.X_OK), binary
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    time.sleep(0.5)
    try:
        os.kill(pid, 0)
        raise AssertionError(f"pcad {pid} still runs after demo.sh was stopped")
    except ProcessLookupError:
        pass
