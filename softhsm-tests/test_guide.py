"""docs/guide/ runs as written: the shell blocks of the task pages, in the guide's order, against
the session's quickstart daemon (the guide's `demo` folder, ports and appkey swapped for the
session's), so the guide cannot rot. The tokens page needs a config change and is left out."""

import re
import secrets
import subprocess
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide"
PAGES = ["create-ca-hierarchy.md", "issue-leaves.md", "revoke.md", "crl-ocsp.md", "audit.md"]


def shell_blocks(page):
    return re.findall(r"```sh\n(.*?)```", (GUIDE / page).read_text(), flags=re.S)


def test_guide_pages_run_as_written(pcad, tmp_path):
    appkey = f"guide-{secrets.token_hex(3)}"
    (setup,) = shell_blocks("README.md")
    setup = (setup.replace("D=demo", f"D={pcad.dir}")
             .replace("localhost:8443", f"localhost:{pcad.api_port}")
             .replace("127.0.0.1:8080", f"127.0.0.1:{pcad.public_port}")
             .replace("/appkeys/demo", f"/appkeys/{appkey}"))
    script = "set -euo pipefail\n" + setup + "".join(
        f"echo '== {page}'\n" + "".join(shell_blocks(page)) for page in PAGES)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{out}\n--- script ---\n{script}"
    assert "leaf.pem: OK" in out, out  # openssl verify of the GENERATE leaf
    assert '"REVOKED"' in out, out  # revoke answers the revoked certificate
    assert "leaf.pem: revoked" in out, out  # OCSP, after the revoke
    assert "Reason: Key Compromise" in out or "keyCompromise" in out, out
    assert (tmp_path / "app.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")  # SIGN
    assert (tmp_path / "int.crl").stat().st_size > 0
