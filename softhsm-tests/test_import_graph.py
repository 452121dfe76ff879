"""The module import graph (scripts/import-graph.py) runs one way: no circles between modules.

Pure text reading of src/; no daemon. The checker itself is tried on a small tree with a circle.
"""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "import-graph.py"


def run(src):
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src)], capture_output=True, text=True, timeout=60
    )


def test_pcad_has_no_import_cycles():
    r = run(REPO / "src")
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines[-1] == "no cycles"
    # The edges the house work turned around: the domain no longer reaches into HTTP or
    # back from status into ca, the API not into the store, and pki's shared field types sit
    # below cert/ext/name.
    edges = {}
    parent = None
    for line in lines:
        if line.endswith(":") and not line.startswith(" "):
            parent = line[:-1]
        elif " -> " in line:
            a, bs = line.strip().split(" -> ")
            edges[(parent, a)] = set(bs.split(", "))
    assert "status" in edges[("crate", "ca")]
    assert "ca" not in edges[("crate", "status")]
    assert "api" not in edges[("crate", "ca")]
    # The API reads ca's views, never the database's records (#12).
    assert "store" not in edges[("crate", "api")]
    assert "clock" in edges[("crate", "status")]
    assert "cert" not in edges[("pki", "name")] and "cert" not in edges[("pki", "ext")]
    assert "fields" in edges[("pki", "name")]
    # The cached OCSP response has a module of its own, below both the cache and the sink.
    assert "cache" not in edges[("status", "sink")]
    assert "response" in edges[("status", "sink")] and "response" in edges[("status", "cache")]


def test_checker_finds_a_cycle(tmp_path):
    (tmp_path / "lib.rs").write_text("pub mod a;\npub mod b;\npub mod c;\n")
    (tmp_path / "a.rs").write_text("use crate::b::{self, Thing};\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mod.rs").write_text("mod inner;\npub use inner::Thing;\n")
    (tmp_path / "b" / "inner.rs").write_text("pub fn f() -> i64 { crate::a::g() }\n")
    (tmp_path / "c.rs").write_text(
        "pub fn h() { crate::a::g(); }\n#[cfg(test)]\nmod tests { use crate::b::Thing; }\n"
    )
    r = run(tmp_path)
    assert r.returncode == 1, r.stdout
    assert "crate: a <-> b" in r.stdout
    assert "  c -> a" in r.stdout  # the test module's use of b is left out
    assert "  c -> a, b" not in r.stdout
