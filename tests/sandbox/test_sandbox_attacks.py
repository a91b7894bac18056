"""The security battery: every attack contained (right verdict, extra check, harness alive, machine
clean), and the battery's own checks can fail."""

import os
import re
import socket
import sys
import threading
import time

import pytest

from msrbook import sandbox as S
from msrbook.sandbox import attacks as A

pytestmark = pytest.mark.skipif(not S.available(), reason="sandbox isolation unavailable here: "
                                + "; ".join(S._probe()) if sys.platform.startswith("linux") else "not Linux")


@pytest.fixture(scope="module")
def rows():
    return {r["attack"]: r for r in A.run_battery()}


@pytest.mark.parametrize("attack", [a.name for a in A.ATTACKS])
def test_attack_contained(rows, attack):
    if attack not in rows:
        pytest.skip("needs ::1, which this machine lacks")
    r = rows[attack]
    assert r["contained"], r


def test_every_threat_of_the_mechanism_table_is_attacked():
    assert {t for t, _ in S.MECHANISMS} == {a.threat for a in A.ATTACKS}


def test_network_attacks_touch_only_loopback():
    """The battery may connect only to its own listeners on 127.0.0.1 and ::1."""
    for a in A.ATTACKS:
        hosts = set(re.findall(r"\d+\.\d+\.\d+\.\d+|'::1'|\"::1\"", a.code))
        assert hosts <= {"127.0.0.1", "'::1'"}, (a.name, hosts)


def test_listener_check_can_fail():
    """_accepted() counts a TCP connection, a UDP datagram and an abstract-socket connection made
    from the harness itself (outside the sandbox's network namespace)."""
    tcp = A._listener(socket.AF_INET, ("127.0.0.1", 0))
    udp = A._listener(socket.AF_INET, ("127.0.0.1", 0), socket.SOCK_DGRAM)
    name = b"\0msrbook-sbx-test-" + str(os.getpid()).encode()
    unix = A._listener(socket.AF_UNIX, name)
    clients = [socket.create_connection(tcp.getsockname(), timeout=2), socket.socket(socket.AF_UNIX)]
    clients[1].connect(name)
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", udp.getsockname())
    time.sleep(0.05)
    try:
        assert A._accepted([tcp, udp, unix]) == 3
        assert A._accepted([tcp, udp, unix]) == 0   # counted once
    finally:
        for s in clients + [tcp, udp, unix]:
            s.close()


def test_leftover_checks_can_fail():
    """While a run is in progress its processes and /tmp show up; afterwards they are gone."""
    with S.Sandbox(S.Limits(wall_s=5.0), workers=1) as sb:
        sb.run("print(1)")
        t = threading.Thread(target=sb.run, args=("import os, time\nif os.fork() == 0:\n    time.sleep(9)\n"
                                                  "open('/dev/shm/x', 'w')\ntime.sleep(1.5)",))
        t.start()
        time.sleep(0.8)
        assert len(sb.stray_processes()) == 2
        assert os.geteuid() != 0 or len(A._procs_of(set(sb.worker_uids()))) == 2
        assert not A._run_mounts_gone(sb)
        t.join()
        assert sb.stray_processes() == [] and A._run_mounts_gone(sb)
        assert os.geteuid() != 0 or A._procs_of(set(sb.worker_uids())) == []


def test_context_detects_escapes_and_cleans_up():
    ctx = A._Context()
    try:
        assert ctx.escaped_files() == [] and ctx.secret_intact()
        assert os.environ[A.SECRET_ENV] == ctx.env_secret
        open(ctx.targets["t_tmp"], "w").close()       # what an escaped write would leave
        assert ctx.escaped_files() == [ctx.targets["t_tmp"]]
        (ctx.dirs[0] / "secret.txt").chmod(0o644)     # what a weakened secret would look like
        assert not ctx.secret_intact()
    finally:
        ctx.close()
    assert ctx.escaped_files() == [] and not any(d.exists() for d in ctx.dirs)
    assert os.environ.get(A.SECRET_ENV) is None


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv") or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to become an unprivileged user), setpriv and a system python3")
def test_battery_contained_in_user_namespace_mode():
    """The same battery with the harness itself running as `nobody`: the sandbox then works through a
    user namespace. The library is copied where `nobody` can read it (this checkout's Python may sit
    in root's home), with a stand-in repository root."""
    import json
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory(prefix="msrbook-sbx-userns-") as d:
        base = Path(d)
        pkg, repo = base / "pkg" / "msrbook", base / "repo"
        pkg.mkdir(parents=True)
        repo.mkdir()
        shutil.copytree(Path(S.__file__).parent, pkg / "sandbox", ignore=shutil.ignore_patterns("__pycache__"))
        (pkg / "__init__.py").write_text(f"from pathlib import Path\ndef repo_root():\n    return Path({str(repo)!r})\n")
        (repo / "chapters.yml").write_text("chapters: []\n")
        script = base / "run.py"
        script.write_text(f"import json, sys\nsys.path.insert(0, {str(pkg.parent)!r})\n"
                          "from msrbook import sandbox\nfrom msrbook.sandbox import attacks\n"
                          "print(json.dumps([sandbox.check()['mode'], attacks.run_battery()]))\n")
        for p in [base, *base.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.chown(repo, 65534, 65534)  # the battery plants its secret under the repository's .cache/
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--reset-env",
                              SYSTEM_PYTHON, "-I", str(script)], capture_output=True, text=True, timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    mode, rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert mode == "user namespace"
    assert len(rows) >= len(A.ATTACKS) - 1  # ::1 may be missing
    assert [r["attack"] for r in rows if not r["contained"]] == [], [r for r in rows if not r["contained"]]
