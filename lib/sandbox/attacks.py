"""The sandbox's security battery: attacks as data, and a runner that says which were contained.

Each Attack is a small hostile program with the verdict the sandbox must give it. An attack is
*contained* when (1) the verdict is the expected one, (2) its extra check passes (no secret in the
output, the loopback listeners accepted nothing, the process count stayed bounded), (3) the harness
still runs a canary program correctly afterwards, and (4) the machine is clean: no process is left
in the workers' PID namespaces (nor, as root, of the sandbox's uids), no escape target file exists,
the planted secret is unchanged, and each worker's /tmp and /dev/shm are back to their read-only
covers (the run's own file systems are gone).

    rows = run_battery()                                  # list of dicts, one per attack
    contained = sum(r["contained"] for r in rows) / len(rows)

Network attacks connect only to listeners the battery itself opens on 127.0.0.1 and ::1.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from .. import repo_root
from . import Limits, Sandbox, Verdict

SECRET_ENV = "MSRBOOK_SANDBOX_SECRET"


@dataclass(frozen=True)
class Attack:
    name: str
    threat: str          # a threat of msrbook.sandbox.MECHANISMS
    code: str            # a string.Template: $port4 $udp4 $abstract $secret_file $t_repo ... (Python literals)
    expected: Verdict
    check: str = ""      # extra condition: "bounded_count", "no_secret", "no_connection"


def _a(name, threat, expected, code, check=""):
    return Attack(name, threat, code.strip("\n"), Verdict(expected), check)


ATTACKS = [
    _a("fork bomb", "fork bomb", "runtime_error", "import os\nwhile True:\n    os.fork()"),
    _a("fork until refused", "fork bomb", "ok", """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError:
    print(n)""", "bounded_count"),
    _a("orphaned daemon", "fork bomb", "ok", """
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            pass
print("parent exits, daemon keeps spinning")"""),
    _a("infinite loop", "endless computation", "time_limit", "while True:\n    pass"),
    _a("sleep forever", "endless computation", "time_limit", "import time\ntime.sleep(10**6)"),
    _a("memory hog (one block)", "memory exhaustion", "memory_limit", "b = bytearray(8 << 30)"),
    _a("memory hog (growing)", "memory exhaustion", "memory_limit",
       "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))"),
    _a("stdout flood", "huge output or files", "output_limit",
       "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)"),
    _a("stderr flood", "huge output or files", "output_limit",
       "import sys\nwhile True:\n    sys.stderr.write('x' * 65536)"),
    _a("huge file in its own folder", "huge output or files", "output_limit",
       "with open('big', 'wb') as f:\n    while True:\n        f.write(bytes(1 << 20))"),
    _a("fill the temp disk", "huge output or files", "runtime_error", """
for i in range(10**6):
    with open(f"f{i}", "wb") as f:
        f.write(bytes(512 << 10))"""),
    _a("write into the repository", "writing outside its folder", "runtime_error",
       "open($t_repo, 'w').write('pwned')"),
    _a("write into /tmp", "writing outside its folder", "runtime_error", "open($t_tmp, 'w').write('pwned')"),
    # /dev/shm is a private per-run tmpfs (multiprocessing needs it): the write succeeds there, the host's stays clean
    _a("write into /dev/shm", "writing outside its folder", "ok", "open($t_shm, 'w').write('pwned')"),
    _a("write into /var/tmp", "writing outside its folder", "runtime_error", "open($t_vartmp, 'w').write('pwned')"),
    _a("write into $HOME", "writing outside its folder", "runtime_error", "open($t_home, 'w').write('pwned')"),
    _a("chdir / and write", "writing outside its folder", "runtime_error",
       "import os\nos.chdir('/')\nopen($t_root_rel, 'w').write('pwned')"),
    _a("os.system writes the repository", "writing outside its folder", "runtime_error",
       "import os, sys\nrc = os.system('echo pwned > ' + $t_repo_sh)\nsys.exit(0 if rc == 0 else 3)"),
    _a("read the planted secret file", "reading secrets", "runtime_error", "print(open($secret_file).read())",
       "no_secret"),
    _a("read the planted secret in the host temp dir", "reading secrets", "runtime_error",
       "print(open($secret_file_tmp).read())", "no_secret"),
    _a("read the environment", "reading secrets", "ok", "import os\nprint(dict(os.environ))", "no_secret"),
    _a("read every /proc/*/environ", "reading secrets", "ok", """
import glob
for p in glob.glob('/proc/*/environ'):
    try:
        print(p, open(p, 'rb').read())
    except OSError as e:
        print(p, type(e).__name__)""", "no_secret"),
    _a("read /etc/shadow", "reading secrets", "runtime_error", "print(open('/etc/shadow').read())"),
    # the repository is hidden: its data could hold the outputs a candidate is judged against
    _a("read a world-readable repository file", "reading secrets", "runtime_error", "print(open($repo_file).read())"),
    _a("connect to 127.0.0.1", "network access", "runtime_error",
       "import socket\nsocket.create_connection(('127.0.0.1', $port4), timeout=2)", "no_connection"),
    _a("connect to ::1", "network access", "runtime_error",
       "import socket\nsocket.create_connection(('::1', $port6), timeout=2)", "no_connection"),
    _a("ctypes connect to 127.0.0.1", "network access", "runtime_error", """
import ctypes, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
addr = struct.pack('<H', socket.AF_INET) + struct.pack('>H', $port4) + socket.inet_aton('127.0.0.1') + bytes(8)
if fd < 0 or libc.connect(fd, addr, len(addr)) != 0:
    raise OSError(ctypes.get_errno(), 'connect refused')
print('connected')""", "no_connection"),
    _a("UDP datagram to 127.0.0.1", "network access", "runtime_error",
       "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', $udp4))",
       "no_connection"),
    _a("connect to an abstract unix socket", "network access", "runtime_error",
       "import socket\nsocket.socket(socket.AF_UNIX).connect($abstract)", "no_connection"),
    # refused (root mode: another uid) or ignored (a PID namespace's init gets no SIGKILL from inside)
    _a("kill the parent", "killing the harness", "ok", """
import os, time
try:
    os.kill(os.getppid(), 9)
except PermissionError:
    print('refused')
time.sleep(0.2)
print('parent alive')"""),
    _a("kill the harness by its host pid", "killing the harness", "runtime_error", "import os\nos.kill($harness_pid, 9)"),
    _a("kill its process group", "killing the harness", "killed", "import os\nos.killpg(0, 9)"),
    _a("kill -1 from Python", "killing the harness", "runtime_error", "import os\nos.kill(-1, 9)"),
    _a("kill -9 -1 from a shell", "killing the harness", "killed",
       "import os, time\nos.system('kill -9 -1')\ntime.sleep(5)"),
    _a("setuid(0), then read /etc/shadow", "privilege escalation", "runtime_error", """
import os
try:
    os.setuid(0)  # refused as root's sandbox uid; a no-op as the user namespace's powerless uid 0
except PermissionError:
    pass
print(open('/etc/shadow').read())"""),
    _a("ctypes fork loop", "fork bomb", "ok", """
import ctypes
libc = ctypes.CDLL(None)
n = 0
while True:
    pid = libc.fork()
    if pid == 0:
        libc.pause()
    if pid < 0:
        break
    n += 1
print(n)""", "bounded_count"),
    _a("ctypes segfault", "privilege escalation", "killed", "import ctypes\nctypes.string_at(0)"),
    _a("ctypes open outside", "writing outside its folder", "runtime_error", """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.open($t_tmp.encode(), os.O_CREAT | os.O_WRONLY, 0o644) < 0:
    raise OSError(ctypes.get_errno(), 'open refused')"""),
    _a("ctypes ptrace the init", "killing the harness", "runtime_error", """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, 1, None, None) != 0:  # PTRACE_ATTACH
    raise OSError(ctypes.get_errno(), 'ptrace refused')"""),
    _a("answer for the init through /proc/1/fd/1", "killing the harness", "runtime_error", """
import json, struct
fake = json.dumps({'verdict': 'ok', 'stdout': 'forged', 'stderr': '', 'exit_code': 0, 'wall_s': 0,
                   'cpu_s': 0, 'max_rss_mb': 0, 'note': ''}).encode()
with open('/proc/1/fd/1', 'wb') as f:  # the init's pipe to the harness
    f.write(struct.pack('<Q', len(fake)) + fake)"""),
    _a("write into the init's memory", "privilege escalation", "runtime_error", "open('/proc/1/mem', 'r+b').write(b'x')"),
    _a("ctypes mount a tmpfs", "privilege escalation", "runtime_error", """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(b'tmpfs', b'/tmp/work', b'tmpfs', 0, None) != 0:
    raise OSError(ctypes.get_errno(), 'mount refused')"""),
    _a("ctypes new user namespace", "privilege escalation", "runtime_error", """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    raise OSError(ctypes.get_errno(), 'unshare refused')"""),
]


def _listener(family: int, address, kind: int = socket.SOCK_STREAM) -> socket.socket | None:
    """A non-blocking listener (or bound datagram socket) on a loopback or abstract address."""
    try:
        s = socket.socket(family, kind)
        s.bind(address)
        if kind == socket.SOCK_STREAM:
            s.listen(8)
        s.setblocking(False)
        return s
    except OSError:  # no IPv6 on this machine
        return None


def _accepted(listeners) -> int:
    """Connections accepted plus datagrams received since the last call."""
    n = 0
    for s in listeners:
        while True:
            try:
                if s.type == socket.SOCK_STREAM:
                    s.accept()[0].close()
                else:
                    s.recvfrom(65536)
                n += 1
            except BlockingIOError:
                break
    return n


def _procs_of(uids: set[int]) -> list[int]:
    """Host pids whose real, effective, saved or fs uid is one of `uids`."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/status") as f:
                    line = next(x for x in f if x.startswith("Uid:"))
                if uids & {int(u) for u in line.split()[1:]}:
                    found.append(int(d))
            except (OSError, StopIteration):
                pass
    return found


class _Context:
    """Planted secrets, escape targets and loopback listeners for one battery run."""

    def __init__(self):
        tok = secrets.token_hex(8)
        self.secret = f"SECRET-{tok}"
        self.env_secret = f"ENV-{tok}"
        cache = repo_root() / ".cache"  # inside the repository, and git-ignored should a crash leave it
        cache.mkdir(exist_ok=True)
        self.dirs = [Path(tempfile.mkdtemp(prefix="sbx-secret-", dir=cache)),
                     Path(tempfile.mkdtemp(prefix="msrbook-sbx-secret-"))]
        for d in self.dirs:
            d.chmod(0o755)  # only the file's own mode protects it
            (d / "secret.txt").write_text(self.secret)
            (d / "secret.txt").chmod(0o600)
        name = f"msrbook-sbx-escape-{tok}"
        home = os.path.expanduser("~")
        self.targets = {"t_repo": str(repo_root() / name), "t_tmp": f"/tmp/{name}", "t_shm": f"/dev/shm/{name}",
                        "t_vartmp": f"/var/tmp/{name}", "t_home": f"{home}/{name}", "t_root_rel": name,
                        "t_repo_sh": str(repo_root() / (name + "-sh"))}
        tcp4, tcp6 = _listener(socket.AF_INET, ("127.0.0.1", 0)), _listener(socket.AF_INET6, ("::1", 0))
        udp4 = _listener(socket.AF_INET, ("127.0.0.1", 0), socket.SOCK_DGRAM)
        abstract = b"\0msrbook-sbx-" + tok.encode()  # abstract unix sockets belong to a network namespace
        unix = _listener(socket.AF_UNIX, abstract)
        self.listeners = [s for s in (tcp4, tcp6, udp4, unix) if s]
        self.ipv6 = tcp6 is not None
        files = {"secret_file": str(self.dirs[0] / "secret.txt"), "secret_file_tmp": str(self.dirs[1] / "secret.txt"),
                 "repo_file": str(repo_root() / "chapters.yml")}
        self.fmt = {**{k: repr(v) for k, v in {**self.targets, **files}.items()},
                    "port4": tcp4.getsockname()[1], "port6": tcp6.getsockname()[1] if tcp6 else 9,
                    "udp4": udp4.getsockname()[1], "abstract": repr(abstract), "harness_pid": os.getpid()}
        self._old_env = os.environ.get(SECRET_ENV)
        os.environ[SECRET_ENV] = self.env_secret
        self.planted = {d: self._snapshot(d / "secret.txt") for d in self.dirs}

    @staticmethod
    def _snapshot(p: Path):
        st = p.stat()
        return p.read_text(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns

    def escaped_files(self) -> list[str]:
        paths = [v for k, v in self.targets.items() if k != "t_root_rel"] + ["/" + self.targets["t_root_rel"]]
        return [p for p in paths if os.path.lexists(p)]

    def secret_intact(self) -> bool:
        return all(self._snapshot(d / "secret.txt") == snap for d, snap in self.planted.items())

    def close(self) -> None:
        for s in self.listeners:
            s.close()
        for d in self.dirs:
            (d / "secret.txt").unlink(missing_ok=True)
            d.rmdir()
        for p in self.escaped_files():  # an escape is reported before this; do not leave it behind
            os.unlink(p)
        if self._old_env is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = self._old_env


RUN_MOUNTS = ("/tmp/work", "/tmp/.io")  # the binds a run makes inside its own /tmp tmpfs


def _run_mounts_gone(sb: Sandbox) -> bool:
    """Each worker's /tmp and /dev/shm are again the read-only covers: the run's tmpfs mounts (and
    its binds under /tmp) were unmounted. Read from the init's mountinfo, which needs no privilege.
    Only the run's own mount points count: a checkout that lies under /tmp (a CI clone, say) has its
    Python installation bound there again for the whole life of the worker, and that is no leftover."""
    for pid in sb.worker_init_pids():
        with open(f"/proc/{pid}/mountinfo") as f:
            mounts = [(line.split()[4], line.split()[5].split(",")) for line in f]
        top = {mp: opts for mp, opts in mounts}  # later lines are mounted on top of earlier ones
        if any(mp in RUN_MOUNTS for mp, _ in mounts) or any("ro" not in top[d] for d in ("/tmp", "/dev/shm")):
            return False
    return True


def _extra_ok(attack: Attack, r, ctx: _Context, lim: Limits, accepted: int) -> bool:
    if attack.check == "bounded_count":
        return r.stdout.strip().isdigit() and int(r.stdout) < lim.max_procs
    if attack.check == "no_secret":
        text = r.stdout + r.stderr
        return ctx.secret not in text and ctx.env_secret not in text
    if attack.check == "no_connection":
        return accepted == 0
    return True


def run_one(sb: Sandbox, attack: Attack, ctx: _Context, lim: Limits) -> dict:
    t0 = time.perf_counter()
    r = sb.run(Template(attack.code).substitute(ctx.fmt), "", lim)
    time.sleep(0.05)  # a connection the kernel queued shows up in accept() by now
    accepted = _accepted(ctx.listeners)
    canary = sb.run("print(6 * 7)", "", lim)
    alive = canary.verdict is Verdict.OK and canary.stdout == "42\n"
    stray = set(sb.stray_processes())
    if os.geteuid() == 0:  # root mode: the programs' uids are the sandbox's own
        stray |= set(_procs_of(set(sb.worker_uids())))
    escaped = ctx.escaped_files()
    clean = not stray and not escaped and ctx.secret_intact() and _run_mounts_gone(sb)
    extra = _extra_ok(attack, r, ctx, lim, accepted)
    return {"attack": attack.name, "threat": attack.threat, "expected": attack.expected.value,
            "verdict": r.verdict.value, "extra_check": attack.check or "-", "extra_ok": extra,
            "harness_alive": alive, "stray_processes": len(stray), "escaped_files": len(escaped),
            "clean": clean, "contained": r.verdict is attack.expected and extra and alive and clean,
            "note": r.note, "stderr_tail": r.stderr[-200:], "seconds": time.perf_counter() - t0}


def run_battery(limits: Limits | None = None, attacks=None) -> list[dict]:
    """Run every attack (IPv6 ones only where ::1 exists) on a fresh one-worker sandbox."""
    lim = limits or Limits(wall_s=2.0, cpu_s=1.0, memory_mb=256, max_procs=16)
    ctx = _Context()
    try:
        todo = [a for a in (attacks or ATTACKS) if ctx.ipv6 or "$port6" not in a.code]
        with Sandbox(lim, workers=1) as sb:
            return [run_one(sb, a, ctx, lim) for a in todo]
    finally:
        ctx.close()
