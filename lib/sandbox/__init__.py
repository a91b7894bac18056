"""Run untrusted Python programs under the operating system's isolation (rStar-Coder's sandbox).

rStar-Coder (arXiv:2505.21297) labels test outputs by running 16 sampled solutions on >= 50
generated inputs per problem: millions of runs of code nobody has read. This module runs each one
in its own process with hard limits, and returns a structured verdict instead of an exception.

    sb = Sandbox(Limits(wall_s=2.0, cpu_s=1.0, memory_mb=256))
    r = sb.run("print(int(input()) * 2)", "21\n")      # Result(verdict=OK, stdout="42\n", ...)
    rs = sb.run_inputs(code, inputs)                    # one program, many inputs: the hot path
    judge(r, "42") -> Verdict.OK | WRONG | the run's own failure verdict

How (Linux, as root; the mechanisms are listed in MECHANISMS):

* The harness starts `workers` worker processes. Each enters new mount, network, PID, IPC and UTS
  namespaces (libc `unshare` through ctypes) and forks the PID namespace's init (not dumpable,
  so programs cannot reach its pipes through /proc/1/fd). The init hides
  $HOME, /root, /home, /tmp, /var/tmp, /run, /dev/shm, the repository and the harness's working
  folder under empty tmpfs mounts (re-exposing only the Python installation's own folders),
  remounts every other mount read-only and nosuid, and pre-imports common modules. It stays root
  and never runs untrusted code.
* Per run, the init mounts fresh tmpfs on /tmp (read-only but for a private work folder) and
  /dev/shm, then forks a child that sets rlimits (CPU, address space, process count, file size, open files, no
  core), redirects stdin/stdout/stderr to files only root can open by name, drops to a uid of its
  own (no groups, no_new_privs, not dumpable), installs a seccomp filter and exec()s the compiled
  program. No interpreter start-up per run; consecutive inputs of one program travel to a worker
  in chunks, and come back one answer per input.
* The init waits on a pidfd with the wall-clock limit, SIGKILLs every process left in the
  namespace (kill(-1) from the init reaches all of them and nothing outside), reaps them, and
  unmounts /tmp and /dev/shm. If a worker dies or stops answering, the harness kills its process
  group (the init has PR_SET_PDEATHSIG, so the whole namespace dies with it) and starts a new one.

Without root, a user namespace stands in where the kernel allows unprivileged ones: the harness's
uid becomes uid 0 inside, and since only that one uid can be mapped (without the setuid newuidmap
helper) the program cannot get a uid of its own; it gives up every capability instead (locked
securebits, empty bounding set, capset to zero). Files the harness's user can read stay readable
where they are not hidden, so the hiding carries more weight in that mode; RLIMIT_NPROC counts the
namespace's own processes (Linux >= 5.14). With neither root nor user namespaces, or without the
other namespaces, Sandbox() raises SandboxUnavailable naming what is missing (see `check()`).
The file is longer than the house's ~300 lines because the worker runs this very file as a script
(`python -I sandbox.py CONFIG`, however the package is installed) and the registry lists it as the
chapter's code path.
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
import queue
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache


class Verdict(str, enum.Enum):
    OK = "ok"
    WRONG = "wrong"                  # only from judge(): ran fine, output differs
    TIME_LIMIT = "time_limit"        # wall clock or CPU time exceeded
    MEMORY_LIMIT = "memory_limit"    # address-space limit hit (MemoryError)
    RUNTIME_ERROR = "runtime_error"  # non-zero exit, uncaught exception, syntax error
    OUTPUT_LIMIT = "output_limit"    # stdout/stderr or a written file beyond its limit
    KILLED = "killed"                # died from a signal no limit explains (SIGSEGV, self-kill), or worker lost


@dataclass(frozen=True)
class Limits:
    wall_s: float = 2.0                 # wall-clock seconds per run
    cpu_s: float = 1.0                  # CPU seconds of the main process (RLIMIT_CPU rounds up; measured value decides)
    memory_mb: int = 256                # address space per process (RLIMIT_AS), interpreter included
    max_procs: int = 16                 # processes/threads of the sandbox uid (RLIMIT_NPROC)
    max_output_bytes: int = 1 << 20     # stdout (and stderr) size
    max_file_bytes: int = 1 << 20       # any single file the program writes (RLIMIT_FSIZE)
    max_open_files: int = 64            # RLIMIT_NOFILE
    stderr_tail_bytes: int = 4096       # how much of stderr the Result keeps (the end)

    @property
    def tmpfs_bytes(self) -> int:
        """Size of the per-run /tmp (work folder plus captured stdout/stderr)."""
        return 2 * self.max_output_bytes + 8 * self.max_file_bytes + (16 << 20)


@dataclass
class Result:
    verdict: Verdict
    stdout: str
    stderr: str            # the last stderr_tail_bytes of stderr
    exit_code: int | None  # exit status, or -signal when killed by a signal, None if unknown
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    note: str = ""         # why the verdict, when it is not obvious (signal name, limit hit)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


class SandboxUnavailable(RuntimeError):
    """The isolation this module needs is missing here; untrusted code is not run."""


MECHANISMS = [  # (threat, mechanism): the table notebook 01 prints
    ("endless computation", "RLIMIT_CPU (SIGXCPU/SIGKILL) and a wall-clock deadline on a pidfd, then SIGKILL"),
    ("memory exhaustion", "RLIMIT_AS per process; tmpfs sizes bound files in memory"),
    ("fork bomb", "RLIMIT_NPROC on a uid of the sandbox's own (without root: per user namespace); PID namespace init kills all"),
    ("huge output or files", "stdout/stderr to files under RLIMIT_FSIZE (SIGXFSZ); sized tmpfs"),
    ("network access", "new network namespace: no interface is up (not even loopback) and the host's are not in it"),
    ("writing outside its folder", "mount namespace: every mount read-only, /tmp and /dev/shm private tmpfs, unprivileged uid"),
    ("reading secrets", "fresh minimal environment; $HOME, /root, /home, /run, host /tmp, the repository hidden; other uid; own /proc"),
    ("killing the harness", "own PID namespace and session; init is root, other uid; harness re-spawns lost workers"),
    ("privilege escalation", "an unprivileged uid, no groups (without root: user namespace, all capabilities dropped); "
                             "no_new_privs, seccomp filter, nosuid mounts, not dumpable"),
]

# --- shared constants (harness and worker) -----------------------------------------------------
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
UID_BASE, UID_SPAN = 1_600_000_000, 1 << 20   # each worker's child uid: UID_BASE + random below UID_SPAN
MEMORY_EXIT = 251                             # the child's exit status for an uncaught MemoryError
SETUP_EXIT = 250                              # the child failed before running the program
PRELOAD = ("sys", "os", "io", "math", "cmath", "collections", "itertools", "functools", "heapq", "bisect",
           "re", "string", "random", "decimal", "fractions", "operator", "copy", "typing", "dataclasses",
           "array", "struct", "time", "datetime", "json", "enum", "traceback", "linecache")
# imported once by each worker's init, so a run that imports them pays nothing (random, decimal,
# fractions and typing alone take ~25 ms to import); heavier ones (numpy, sympy) cost each run, or
# pass them in Sandbox(preload=...).
HIDE = ("/root", "/home", "/tmp", "/var/tmp", "/run", "/dev/shm", "/dev/mqueue")
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp/work",
            "TMPDIR": "/tmp/work", "PYTHONIOENCODING": "utf-8",
            # one BLAS/OpenMP thread: a numpy import would otherwise start one thread per core,
            # which RLIMIT_NPROC refuses on a many-core machine (and a forked init must not hold threads)
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _ok(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _send(fd: int, obj) -> None:
    data = json.dumps(obj).encode()
    buf = struct.pack("<Q", len(data)) + data
    while buf:
        buf = buf[os.write(fd, buf):]


def _recv(fd: int, deadline: float | None = None):
    """One length-prefixed JSON message, or None at EOF; TimeoutError past the deadline."""
    def exact(n: int) -> bytes | None:
        out = b""
        while len(out) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError("sandbox worker did not answer in time")
            chunk = os.read(fd, n - len(out))
            if not chunk:
                return None
            out += chunk
        return out
    head = exact(8)
    if head is None:
        return None
    body = exact(struct.unpack("<Q", head)[0])
    return None if body is None else json.loads(body)


# --- seccomp: the system calls a sandboxed program never needs ------------------------------------
# Namespaces, mounts, tracing, kernel keyrings, eBPF, perf, module loading and userfaultfd: each is
# kernel attack surface (an unprivileged user namespace would hand the program a root-like view of
# new namespaces). Numbers per architecture; any other ABI on the same kernel (i386 via int 0x80,
# x32) is refused as a whole, so it cannot be used to dodge the list.
SECCOMP_ARCH = {  # platform.machine(): (AUDIT_ARCH, clone, clone3, {denied system call numbers})
    "x86_64": (0xC000003E, 56, 435, {272, 308, 165, 166, 155, 101, 250, 248, 249, 321, 298, 323, 246,
                                     175, 313, 176, 161, 428, 429, 430, 431, 432, 433, 442, 425, 310, 311}),
    "aarch64": (0xC00000B7, 220, 435, {97, 268, 40, 39, 41, 117, 219, 217, 218, 280, 241, 282, 104, 105,
                                       273, 106, 51, 428, 429, 430, 431, 432, 433, 442, 425, 270, 271}),
}
NS_FLAGS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x02000000


def _seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """Classic BPF over seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}: (code, jt, jf, k)."""
    arch, clone, clone3, denied = SECCOMP_ARCH[machine]
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, EPERM, ENOSYS = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    body = [(LD, 0, 0, 0)]  # nr
    for nr in sorted(denied):
        body.append((JEQ, "deny", 0, nr))
    body += [(JGE, "deny", 0, 0x40000000),   # x32 ABI numbers
             (JEQ, "nosys", 0, clone3),      # clone3 passes flags in memory BPF cannot read: glibc falls back to clone
             (JEQ, 0, "allow", clone),
             (LD, 0, 0, 16),                 # args[0] low word: clone's flags
             (JSET, "deny", "allow", NS_FLAGS)]
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, arch), (RET, 0, 0, EPERM)] + body
    labels = {"allow": len(prog), "deny": len(prog) + 1, "nosys": len(prog) + 2}
    prog += [(RET, 0, 0, ALLOW), (RET, 0, 0, EPERM), (RET, 0, 0, ENOSYS)]
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):  # labels become offsets from the next instruction
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out.append((code, jt, jf, k))
    return out


_SECCOMP: list = []  # the init's prepared filter (and the buffers it points into), built once


def _prepare_seccomp() -> None:
    """Build the filter in the init, so that each child only makes one prctl call."""
    import platform
    prog = _seccomp_program(platform.machine())

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    arr = (Filter * len(prog))(*[Filter(*ins) for ins in prog])
    _SECCOMP[:] = [Prog(len(prog), arr), arr]


def _install_seccomp(libc) -> None:
    PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
    libc.prctl.argtypes = None  # the third argument is a pointer here
    _ok(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(_SECCOMP[0]), 0, 0), "seccomp filter")

# --- the worker: runs inside the namespaces; this part never returns into harness code ----------
def _mounts() -> list[str]:
    """Mount points, in mount order, from /proc/self/mountinfo (octal escapes decoded)."""
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].encode().decode("unicode_escape") for line in f]


def _keep_paths(hide: list[str]) -> list[str]:
    """Folders of the Python installation the child must still read after `hide` is covered."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    hidden = [os.path.realpath(h) for h in hide if os.path.isdir(h)]
    under = sorted(p for p in paths if any(p == h or p.startswith(h + "/") for h in hidden))
    return [p for i, p in enumerate(under) if not any(p.startswith(q + "/") for q in under[:i])]


def _may_hide(path: str) -> bool:
    """An extra folder (the harness's) may be hidden unless it is a system folder or lies inside
    the Python installation: covering it would take away what the programs run on."""
    p = os.path.realpath(path)
    inside = lambda p, q: p == q or p.startswith(q.rstrip("/") + "/")  # noqa: E731
    system = ("/usr", "/etc", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/proc", "/sys", "/dev")
    py = {os.path.realpath(x) for x in (sys.prefix, sys.base_prefix, *sys.path) if x}
    return p != "/" and not any(inside(p, q) for q in system) and not any(inside(p, q) for q in py)


def _setup_mounts(libc, extra_hide=()) -> None:
    _ok(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    _ok(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV, None), "mount /proc")
    hide = list(HIDE) + [h for h in extra_hide if _may_hide(h)]
    keep = _keep_paths(hide)
    _ok(libc.mount(b"tmpfs", b"/run", b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"), "tmpfs /run")
    stage = "/run/.keep"
    for i, p in enumerate(keep):
        os.makedirs(f"{stage}/{i}")
        _ok(libc.mount(p.encode(), f"{stage}/{i}".encode(), None, MS_BIND | MS_REC, None), f"bind {p}")
    for h in hide:
        if h != "/run" and os.path.isdir(h) and not os.path.islink(h):
            _ok(libc.mount(b"tmpfs", h.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"), f"hide {h}")
    for i, p in enumerate(keep):
        os.makedirs(p, exist_ok=True)
        _ok(libc.mount(f"{stage}/{i}".encode(), p.encode(), None, MS_BIND | MS_REC, None), f"re-expose {p}")
        _ok(libc.umount2(f"{stage}/{i}".encode(), MNT_DETACH), f"unstage {p}")
    for mp in _mounts():
        if mp == "/proc" or mp.startswith("/proc/") or mp == "/dev" or mp == "/dev/pts":
            continue  # device nodes (/dev/null) must stay writable; /proc is the namespace's own
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (0 if mp.startswith("/dev") else MS_NODEV)
        libc.mount(None, mp.encode(), None, flags, None)  # best effort: a stacked, hidden mount may refuse
    with open("/proc/self/mountinfo") as f:  # but the root itself must now be read-only
        root_opts = next(line.split()[5] for line in f if line.split()[4] == "/").split(",")
    if "ro" not in root_opts:
        raise OSError("could not remount / read-only in the sandbox's mount namespace")


def _worker_main() -> None:
    """Entry of `python -I -c ...` started by the harness (root). Never returns."""
    cfg = json.loads(sys.argv[1])
    rfd, wfd = 0, 1
    libc = _libc()
    try:
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        _ok(libc.unshare(flags | (CLONE_NEWUSER if cfg["userns"] else 0)), "unshare")
        if cfg["userns"]:  # the harness's own uid/gid become root inside; nothing else is mapped
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {cfg['host_uid']} 1"),
                               ("gid_map", f"0 {cfg['host_gid']} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
    except OSError as e:
        _send(wfd, {"error": str(e)})
        os._exit(1)
    pid = os.fork()
    if pid:  # outer: nothing to do but wait for the namespace's init
        os.close(rfd), os.close(wfd)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    try:
        _ok(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
        # not dumpable: nothing without CAP_SYS_PTRACE may open its /proc/1/fd (the harness's
        # pipes) or /proc/1/mem, even a program with the init's uid (user-namespace mode)
        _ok(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "init not dumpable")
        # (getppid() is 0 in a new PID namespace, so the usual race check does not apply; the outer
        # process cannot exit before the init: it only waits for it.)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _setup_mounts(libc, cfg.get("hide", []))
        _prepare_seccomp()
        import resource  # noqa: F401 - loaded once here rather than by every child (_set_rlimits)
        os.chdir("/")
        os.environ.clear()
        os.environ.update(SAFE_ENV)
        for m in cfg.get("preload", PRELOAD):
            try:
                __import__(m)
            except Exception:  # a preload that fails here fails the same way in the program
                pass
    except BaseException as e:  # noqa: BLE001 - report any set-up failure, then die
        _send(wfd, {"error": f"{type(e).__name__}: {e}"})
        os._exit(1)
    _send(wfd, {"ready": True, "pid": os.getpid()})
    while True:
        req = _recv(rfd)
        if req is None:
            os._exit(0)
        for stdin in req["stdins"]:  # one program, several inputs: one answer each, as it finishes
            _send(wfd, _serve_one(libc, req["code"], stdin, Limits(**req["limits"]), cfg))


def _serve_one(libc, code: str, stdin: str, lim: Limits, cfg: dict) -> dict:
    size = lim.tmpfs_bytes + 4 * len(stdin)  # stdin lives there too (UTF-8: <= 4 bytes a character)
    _ok(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={size}".encode()), "tmpfs /tmp")
    shm = f"mode=1777,size={lim.tmpfs_bytes}".encode()  # POSIX semaphores (multiprocessing) need it writable
    _ok(libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV, shm), "tmpfs /dev/shm")
    try:
        os.mkdir("/tmp/work", 0o700)
        if not cfg["userns"]:
            os.chown("/tmp/work", cfg["uid"], cfg["uid"])
        os.mkdir("/tmp/.io", 0o700)
        # /tmp itself read-only, its two folders writable (in user-namespace mode the program owns
        # them all, so permissions alone would not keep it from writing /tmp)
        for d in (b"/tmp/work", b"/tmp/.io"):
            _ok(libc.mount(d, d, None, MS_BIND, None), "bind " + d.decode())
        _ok(libc.mount(None, b"/tmp", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None), "/tmp ro")
        with open("/tmp/.io/stdin", "w", encoding="utf-8") as f:
            f.write(stdin)
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(libc, code, lim, cfg)  # never returns
        return _supervise(pid, lim, t0)
    finally:
        _kill_all()
        libc.umount2(b"/tmp", MNT_DETACH)
        libc.umount2(b"/dev/shm", MNT_DETACH)


def _child(libc, code: str, lim: Limits, cfg: dict) -> None:
    status = SETUP_EXIT
    try:
        os.setsid()
        # dumpable for a moment (the init is not, and fork copies that), so that /proc/self belongs
        # to this process also in a user namespace; made not dumpable again below
        _ok(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")  # if the machine runs out of memory, sandboxed code dies first
        fd0 = os.open("/tmp/.io/stdin", os.O_RDONLY)
        fd1 = os.open("/tmp/.io/stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        fd2 = os.open("/tmp/.io/stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((fd0, 0), (fd1, 1), (fd2, 2)):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)
        _set_rlimits(lim, cfg["userns"])
        if cfg["userns"]:
            _drop_capabilities(libc)
        else:
            uid = cfg["uid"]
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        _ok(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _ok(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "not dumpable")
        _install_seccomp(libc)
        os.chdir("/tmp/work")
        for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_DFL)
        sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
        sys.stdout = out = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = err = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
        sys.argv = ["solution.py"]
        status = _exec_program(code, out, err)
    finally:
        os._exit(status)


def _set_rlimits(lim: Limits, userns: bool) -> None:
    import resource as R
    cpu = max(1, int(-(-lim.cpu_s // 1)))
    # In a user namespace RLIMIT_NPROC counts the namespace's own processes (Linux >= 5.14), the
    # outer worker and the init included; as root it counts the child uid's, which only the run has.
    nproc = lim.max_procs + (2 if userns else 0)
    out = max(lim.max_output_bytes, lim.max_file_bytes)
    wanted = {R.RLIMIT_CPU: (cpu, cpu + 1), R.RLIMIT_AS: (lim.memory_mb << 20,) * 2, R.RLIMIT_NPROC: (nproc,) * 2,
              R.RLIMIT_CORE: (0, 0), R.RLIMIT_FSIZE: (out + 1,) * 2, R.RLIMIT_NOFILE: (lim.max_open_files,) * 2,
              R.RLIMIT_MEMLOCK: (0, 0), R.RLIMIT_MSGQUEUE: (0, 0)}
    for res, (soft, hard) in wanted.items():
        cur = R.getrlimit(res)[1]
        if cur != R.RLIM_INFINITY:  # without root a hard limit can only go down
            soft, hard = min(soft, cur), min(hard, cur)
        R.setrlimit(res, (soft, hard))


CAP_LAST = 63   # beyond the last capability any kernel defines: PR_CAPBSET_DROP on unknown ones fails harmlessly


def _drop_capabilities(libc) -> None:
    """User-namespace mode: the child stays uid 0 of the namespace (only one uid is mapped), so it
    gives up every capability for good: securebits that deny root its privileges (locked), an empty
    bounding set, and empty effective/permitted/inheritable sets."""
    PR_SET_SECUREBITS, PR_CAPBSET_DROP = 28, 24
    noroot, no_fixup, keep_caps, no_ambient = 0x1, 0x4, 0x10, 0x40  # each with its *_LOCKED bit next to it
    bits = sum(b | (b << 1) for b in (noroot, no_fixup, no_ambient)) | (keep_caps << 1)
    _ok(libc.prctl(PR_SET_SECUREBITS, bits, 0, 0, 0), "securebits")
    for cap in range(CAP_LAST + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()  # all zero
    _ok(ctypes.CDLL(None, use_errno=True).capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")


def _exec_program(code: str, out, err) -> int:
    import builtins
    import linecache
    import traceback
    status = 0
    linecache.cache["solution.py"] = (len(code), None, code.splitlines(True), "solution.py")  # tracebacks show lines
    try:
        exec(compile(code, "solution.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=err)
    except MemoryError:
        status = MEMORY_EXIT
    except BaseException as e:  # noqa: BLE001 - the program's own error, reported like python would
        traceback.print_exception(type(e), e, e.__traceback__.tb_next, file=err)  # without this frame
        status = 1
    for stream in (sys.stdout, out, sys.stderr, err):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - e.g. EFBIG past the file-size limit
            status = status or 1
    return status


def _supervise(pid: int, lim: Limits, t0: float) -> dict:
    pidfd = os.pidfd_open(pid)
    try:
        timed_out = not select.select([pidfd], [], [], lim.wall_s)[0]
    finally:
        os.close(pidfd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)  # the rest of its processes die in _kill_all
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    out_size = os.path.getsize("/tmp/.io/stdout") if os.path.exists("/tmp/.io/stdout") else 0
    err_size = os.path.getsize("/tmp/.io/stderr") if os.path.exists("/tmp/.io/stderr") else 0
    stdout = _read("/tmp/.io/stdout", 0, lim.max_output_bytes)
    stderr = _read("/tmp/.io/stderr", max(0, err_size - lim.stderr_tail_bytes), lim.stderr_tail_bytes)
    cpu = ru.ru_utime + ru.ru_stime
    code = os.waitstatus_to_exitcode(status)
    verdict, note = _classify(code, timed_out, cpu, out_size, err_size, lim)
    return {"verdict": verdict, "stdout": stdout, "stderr": stderr, "exit_code": code, "wall_s": wall,
            "cpu_s": cpu, "max_rss_mb": ru.ru_maxrss / 1024, "note": note}


def _classify(code: int, timed_out: bool, cpu: float, out_size: int, err_size: int, lim: Limits):
    if timed_out:
        return "time_limit", f"wall clock above {lim.wall_s} s"
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu >= lim.cpu_s):
        return "time_limit", f"RLIMIT_CPU ({max(1, int(-(-lim.cpu_s // 1)))} s) signalled; measured {cpu:.2f} s"
    if cpu > lim.cpu_s:
        return "time_limit", f"CPU time {cpu:.2f} s above {lim.cpu_s} s"
    if code == -signal.SIGXFSZ or out_size > lim.max_output_bytes or err_size > lim.max_output_bytes:
        return "output_limit", "output or a file beyond its size limit"
    if code == MEMORY_EXIT:
        return "memory_limit", f"MemoryError under a {lim.memory_mb} MB address-space limit"
    if code < 0:
        return "killed", f"signal {signal.Signals(-code).name}"
    if code == SETUP_EXIT:
        return "killed", "the sandbox failed to set the child up"
    return ("ok", "") if code == 0 else ("runtime_error", f"exit status {code}")


def _kill_all() -> None:
    """SIGKILL every process of this PID namespace but the init, and reap them all."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _read(path: str, offset: int, n: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(n).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# --- the harness side ----------------------------------------------------------------------------
def _harness_paths() -> list[str]:
    """The harness's own folders, hidden from programs too: the repository (its data could hold the
    very outputs a candidate is judged against), the working directory and $HOME."""
    paths = {os.path.realpath(os.getcwd()), os.path.realpath(os.path.expanduser("~"))}
    try:
        from .. import repo_root
        paths.add(str(repo_root().resolve()))
    except (ImportError, FileNotFoundError):
        pass
    return sorted(paths)


class _Worker:
    """One worker process (and its namespaces), talked to over two pipes."""

    def __init__(self, preload: tuple[str, ...]):
        self.userns = os.geteuid() != 0
        self.uid = os.geteuid() if self.userns else UID_BASE + random.randrange(UID_SPAN)
        cfg = json.dumps({"uid": self.uid, "preload": list(preload), "hide": _harness_paths(), "userns": self.userns,
                          "host_uid": os.geteuid(), "host_gid": os.getegid()})
        self.proc = subprocess.Popen(  # this very file as a script: no need for the package to be importable
            [sys.executable, "-I", os.path.abspath(__file__), cfg],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(SAFE_ENV),
            cwd="/", start_new_session=True, close_fds=True)
        msg = self._recv(time.monotonic() + 60)
        if not msg or "ready" not in msg:
            self.kill()
            raise SandboxUnavailable(f"sandbox worker failed to start: {(msg or {}).get('error', 'no answer')}")

    def _recv(self, deadline):
        return _recv(self.proc.stdout.fileno(), deadline)

    def init_pid(self) -> int | None:
        """Host pid of the namespace's init (the outer process's only child)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
            return int(kids[0]) if kids else None
        except (FileNotFoundError, ProcessLookupError):
            return None

    def send(self, code: str, stdins: list[str], lim: Limits) -> None:
        _send(self.proc.stdin.fileno(), {"code": code, "stdins": stdins, "limits": asdict(lim)})

    def receive(self, lim: Limits) -> Result:
        msg = self._recv(time.monotonic() + lim.wall_s + 30)  # margin: kill, reap, unmount
        if msg is None:
            raise ConnectionError("sandbox worker exited")
        msg["verdict"] = Verdict(msg["verdict"])
        return Result(**msg)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class Sandbox:
    """A pool of sandbox workers; each run is its own isolated process. Thread-safe."""

    def __init__(self, limits: Limits = Limits(), workers: int | None = None, preload: tuple[str, ...] = PRELOAD):
        missing = _probe()
        if missing:
            raise SandboxUnavailable("refusing to run untrusted code: " + "; ".join(missing))
        self.limits, self.workers, self.preload = limits, workers or os.cpu_count() or 1, tuple(preload)
        self._idle: queue.Queue = queue.Queue()
        self._all: list[_Worker] = []  # every live worker, idle or busy
        self._started = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")

    def _checkout(self) -> _Worker:
        while True:
            with self._lock:
                if self._idle.empty() and self._started < self.workers:
                    self._started += 1
                    break
            try:
                return self._idle.get(timeout=0.5)  # re-check now and then: a failed spawn frees a slot
            except queue.Empty:
                continue
        try:
            return self._spawn()
        except BaseException:
            with self._lock:
                self._started -= 1
            raise

    def _spawn(self) -> _Worker:
        w = _Worker(self.preload)
        with self._lock:
            self._all.append(w)
        return w

    def _retire(self, w: _Worker) -> None:
        w.kill()
        with self._lock:
            self._all = [x for x in self._all if x is not w]

    def worker_uids(self) -> list[int]:
        """The uids this pool's programs run as (one per worker), for leftover-process checks."""
        return [w.uid for w in self._all]

    def worker_init_pids(self) -> list[int]:
        return [p for p in (w.init_pid() for w in self._all) if p]

    def stray_processes(self) -> list[int]:
        """Host pids of processes inside the workers' PID namespaces other than their inits: after
        a run has been answered there must be none (orphans are re-parented to the init)."""
        inits = set(self.worker_init_pids())
        parent = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        stray = []
        for pid in parent:
            p, seen = parent.get(pid), 0
            while p and p not in inits and seen < 64:
                p, seen = parent.get(p), seen + 1
            if p in inits:
                stray.append(pid)
        return stray

    def run(self, code: str, stdin: str = "", limits: Limits | None = None) -> Result:
        return self._run_chunk(code, [stdin], limits)[0]

    def _run_chunk(self, code: str, stdins: list[str], limits: Limits | None) -> list[Result]:
        """One program on a few inputs through one worker: one message there, one answer per input
        back, so the harness is not woken twice per run."""
        lim = limits or self.limits
        w = self._checkout()
        out: list[Result] = []
        try:
            w.send(code, stdins, lim)
            for _ in stdins:
                out.append(w.receive(lim))
        except BaseException as e:
            # the worker's state is unknown (it died, hung, or this thread was interrupted mid-message):
            # kill it and free its slot, so the next run starts a fresh one
            self._retire(w)
            with self._lock:
                self._started -= 1
            if not isinstance(e, (TimeoutError, ConnectionError, OSError, ValueError)):
                raise
            lost = Result(Verdict.KILLED, "", "", None, 0.0, 0.0, 0.0, f"sandbox worker lost ({e}); replaced")
            return out + [lost] * (len(stdins) - len(out))
        self._idle.put(w)
        return out

    def _chunks(self, tasks: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
        """Consecutive tasks of the same program, in chunks small enough to keep every worker busy."""
        size = max(1, min(16, len(tasks) // (2 * self.workers)))
        chunks: list[tuple[str, list[str]]] = []
        for code, stdin in tasks:
            if chunks and chunks[-1][0] == code and len(chunks[-1][1]) < size:
                chunks[-1][1].append(stdin)
            else:
                chunks.append((code, [stdin]))
        return chunks

    def run_many(self, tasks, limits: Limits | None = None, progress: bool = False) -> list[Result]:
        """Run (code, stdin) pairs in parallel, each in its own isolated process; results in the
        tasks' order. Consecutive tasks of one program travel to a worker together."""
        chunks = self._chunks(list(tasks))
        futs = [self._pool.submit(self._run_chunk, code, stdins, limits) for code, stdins in chunks]
        if progress:
            from concurrent.futures import as_completed

            from tqdm.auto import tqdm
            bar = tqdm(total=sum(len(s) for _, s in chunks), desc="sandbox")
            for f in as_completed(futs):
                bar.update(len(f.result()))
            bar.close()
        return [r for f in futs for r in f.result()]

    def run_inputs(self, code: str, inputs, limits: Limits | None = None, progress: bool = False) -> list[Result]:
        """One program on many inputs, each in its own isolated process: the hot path."""
        return self.run_many([(code, s) for s in inputs], limits, progress)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for w in list(self._all):
            self._retire(w)
        self._idle = queue.Queue()
        self._started = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _normalize(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def judge(result: Result, expected: str) -> Verdict:
    """OK when the run was ok and its stdout equals `expected` line by line, each line compared as
    its whitespace-separated tokens (blank lines at either end ignored); WRONG when it ran fine but
    differs; else the run's own verdict (time_limit, runtime_error, ...)."""
    if result.verdict is not Verdict.OK:
        return result.verdict
    return Verdict.OK if _normalize(result.stdout) == _normalize(expected) else Verdict.WRONG


# --- availability ---------------------------------------------------------------------------------
_PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
user = 0x10000000 if os.geteuid() != 0 else 0   # without root, each namespace comes with a user namespace
out = {}
for name, flag in [("user_namespace", 0x10000000), ("mount_namespace", 0x00020000), ("network_namespace", 0x40000000),
                   ("pid_namespace", 0x20000000), ("ipc_namespace", 0x08000000), ("uts_namespace", 0x04000000)]:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flag | user) == 0 else 1)
    out[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
out["root"] = os.geteuid() == 0
out["pidfd"] = hasattr(os, "pidfd_open")
print(json.dumps(out))
"""
REQUIRED = ("mount_namespace", "network_namespace", "pid_namespace", "ipc_namespace", "uts_namespace", "pidfd", "seccomp")
WHY = {"pidfd": "os.pidfd_open is missing (Linux >= 5.3 and Python >= 3.9 needed)",
       "seccomp": "no seccomp system-call table for this CPU architecture (x86_64 and aarch64 have one)",
       "root_or_userns": "the harness is not root and cannot create user namespaces (as root, programs run "
                         "as a uid of their own; without root, a user namespace must stand in)"}


@lru_cache(maxsize=1)
def check() -> dict:
    """Which isolation features work on this machine (each probed in a throw-away process)."""
    if not sys.platform.startswith("linux"):
        return {k: False for k in REQUIRED} | {"root": False, "user_namespace": False, "mode": None}
    import platform
    out = subprocess.run([sys.executable, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60)
    feats = json.loads(out.stdout) if out.returncode == 0 else {k: False for k in REQUIRED}
    feats["seccomp"] = platform.machine() in SECCOMP_ARCH
    feats["mode"] = "root" if feats.get("root") else ("user namespace" if feats.get("user_namespace") else None)
    return feats


def _probe() -> list[str]:
    """What is missing, in words; empty when the sandbox can run here."""
    feats = check()
    missing = [] if feats.get("root") or feats.get("user_namespace") else [WHY["root_or_userns"]]
    return missing + [WHY.get(k, f"cannot create a {k.replace('_', ' ')} (unshare failed)")
                      for k in REQUIRED if not feats.get(k)]


def available() -> bool:
    return not _probe()


def throughput(programs, workers: int | None = None, limits: Limits | None = None, repeat: int = 1) -> float:
    """Runs per second for a mix of (code, stdin) programs, timed after every worker has started."""
    tasks = list(programs) * repeat
    with Sandbox(limits or Limits(), workers) as sb:
        sb.run_many(tasks[: sb.workers * 2])  # start every worker before timing
        t0 = time.perf_counter()
        sb.run_many(tasks)
        return len(tasks) / (time.perf_counter() - t0)


def _ints(i: int, n: int) -> str:
    rng = random.Random(i)
    return f"{n}\n" + " ".join(str(rng.randrange(10**9)) for _ in range(n)) + "\n"


THROUGHPUT_PROGRAMS = {  # name: (program, input for run i): a trivial run and a typical small solution
    "trivial (read, add, print)": ("print(int(input()) + 1)", lambda i: f"{i}\n"),
    "sort 10^4 integers": ("import sys\nn, *xs = map(int, sys.stdin.read().split())\nxs.sort()\nprint(xs[n // 2])",
                           lambda i: _ints(i, 10_000)),
}


def _per_interpreter(code: str, inputs: list[str], workers: int) -> list[bool]:
    """The baseline the sandbox avoids: a fresh `python -I -S` per run, unsandboxed, `workers` at a time."""
    def one(stdin: str) -> bool:
        out = subprocess.run([sys.executable, "-I", "-S", "-c", code], input=stdin, capture_output=True, text=True)
        return out.returncode == 0
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, inputs))


def measure_throughput(workers=(1, 2), runs: int = 200, baseline_runs: int = 50,
                       limits: Limits | None = None, programs=None) -> list[dict]:
    """Runs per second of run_inputs for each worker count and program, beside the interpreter-per-run
    baseline. Rows: workers, program, method, runs, seconds, runs_per_s, all_ok, cpu_count."""
    rows = []
    for w in workers:
        with Sandbox(limits or Limits(), w) as sb:
            sb.run_many([("pass", "")] * (2 * w))  # start every worker before timing
            for name, (code, make_input) in (programs or THROUGHPUT_PROGRAMS).items():
                for method, n in (("sandbox", runs), ("python per run, no sandbox", baseline_runs)):
                    if n <= 0:
                        continue
                    inputs = [make_input(i) for i in range(n)]
                    t0 = time.perf_counter()
                    if method == "sandbox":
                        ok = [r.verdict is Verdict.OK for r in sb.run_inputs(code, inputs)]
                    else:
                        ok = _per_interpreter(code, inputs, w)
                    dt = time.perf_counter() - t0
                    rows.append({"workers": w, "program": name, "method": method, "runs": n, "seconds": dt,
                                 "runs_per_s": n / dt, "all_ok": all(ok), "cpu_count": os.cpu_count()})
    return rows


if __name__ == "__main__":  # the worker process, started by _Worker as `python -I sandbox.py CONFIG`
    _worker_main()
