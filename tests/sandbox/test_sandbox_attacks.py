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
from msrbook import sandbox_attacks as A

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
        assert len(A._procs_of(set(sb.worker_uids()))) == 2
        assert not A._tmp_covers_empty(sb)
        t.join()
        assert A._procs_of(set(sb.worker_uids())) == [] and A._tmp_covers_empty(sb)


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
