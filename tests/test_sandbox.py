"""The kernel's side of process isolation, against real confined child processes.

Each test starts the test's interpreter, which applies a Policy first thing and then
tries one forbidden thing (or an allowed one) and reports what happened. Attacks bound
themselves in count, size and time; every process and cgroup is gone afterwards.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from sandbox_support import LIGHT_IMPORT, Box, make_box, remove_box, run_confined
from tether.isolation._probe import KernelFeatures, probe
from tether.isolation._sandbox import (
    Limits,
    Policy,
    SandboxError,
    _precheck,
    _Steps,
    pick_uid,
)

FEATURES = probe()
pytestmark = pytest.mark.skipif(
    not (sys.platform == "linux" and os.geteuid() == 0 and FEATURES.landlock and FEATURES.seccomp),
    reason="needs Linux as root with Landlock and seccomp (see `tether doctor`)",
)
needs_cgroups = pytest.mark.skipif(
    not {"memory", "pids"} <= FEATURES.cgroup_controllers,
    reason="needs writable memory and pids cgroups",
)


@pytest.fixture
def box():
    made = make_box()
    yield made
    remove_box(made)


@pytest.fixture
def uid() -> int:
    return pick_uid()


@pytest.fixture
def sleeper():
    """A root process of the host's the confined child must not be able to touch."""
    process = subprocess.Popen(["sleep", "30"])
    yield process
    process.kill()
    process.wait()


# --------------------------------------------------------------------------- allowed


def test_what_is_allowed_still_works(box: Box, uid: int):
    listener = socket.socket(socket.AF_UNIX)
    path = box.data_dir / "host.sock"
    listener.bind(str(path))
    path.chmod(0o777)
    listener.listen(1)
    listener.settimeout(20)

    def echo():
        connection, _ = listener.accept()
        with connection:
            connection.sendall(connection.recv(64).upper())

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    body = f"""
    import socket
    text = open({str(box.plugin_dir / "plugin.py")!r}).read()
    with open({str(box.data_dir / "out.txt")!r}, "w") as file:
        file.write("written")
    sock = socket.socket(socket.AF_UNIX)
    sock.connect({str(path)!r})
    sock.sendall(b"ping")
    import decimal, ssl, ctypes, sqlite3  # extension modules load after the sandbox
    report(read=text, echo=sock.recv(64).decode(), uid=os.getuid(), pid=os.getpid(),
           env=sorted(os.environ), enforced=applied.enforced)
    """
    outcome, _ = run_confined(box.policy(uid), body)
    thread.join(5)
    listener.close()
    assert outcome.returncode == 0, outcome.stderr
    result = outcome.last
    assert result["read"] == "VALUE = 42\n"
    assert (box.data_dir / "out.txt").read_text() == "written"
    assert result["echo"] == "PING"
    assert result["uid"] == uid
    assert result["pid"] == 1  # PID 1 of its own namespace
    assert "TETHER_TEST_SECRET" not in result["env"]
    assert set(result["env"]) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR"}
    assert "seccomp" in result["enforced"]
    assert f"uid {uid}, no capabilities" in result["enforced"]


def test_environment_names_the_config_passes_are_kept(box: Box, uid: int):
    body = "report(secret=os.environ.get('TETHER_TEST_SECRET'))"
    outcome, _ = run_confined(box.policy(uid, environment=("TETHER_TEST_SECRET",)), body)
    assert outcome.last == {"secret": "do-not-leak"}


# --------------------------------------------------------------------------- network


def test_tcp_socket_is_refused_by_seccomp(box: Box, uid: int):
    body = """
    import socket
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        report(errno=exc.errno)
    """
    outcome, _ = run_confined(box.policy(uid), body)
    assert outcome.last == {"errno": errno.EPERM}


@pytest.fixture
def tcp_listener():
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener.getsockname()[1]
    listener.close()


def test_tcp_connect_with_a_socket_made_before_is_refused_by_landlock(
    box: Box, uid: int, tcp_listener: int
):
    prelude = (
        LIGHT_IMPORT
        + """
import json, os, socket, sys
def report(**values):
    print(json.dumps(values), flush=True)
early = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # before the sandbox
from tether.isolation._sandbox import Policy, apply
applied = apply(Policy.from_json(sys.argv[1]))
"""
    )
    body = f"""
    try:
        early.connect(("127.0.0.1", {tcp_listener}))
        report(errno=0)
    except OSError as exc:
        report(errno=exc.errno)
    """
    outcome, _ = run_confined(box.policy(uid), body, prelude=prelude)
    assert outcome.last == {"errno": errno.EACCES}


def test_network_namespace_is_empty(box: Box, uid: int, tcp_listener: int):
    # only the namespace step, so that seccomp and Landlock do not answer first
    prelude = (
        LIGHT_IMPORT
        + """
import json, os, socket, sys
def report(**values):
    print(json.dumps(values), flush=True)
from tether.isolation import _sandbox
policy = _sandbox.Policy.from_json(sys.argv[1])
_sandbox._enter_namespaces(_sandbox._Steps(policy, _sandbox.probe()), fork=False)
"""
    )
    body = f"""
    try:
        socket.create_connection(("127.0.0.1", {tcp_listener}), timeout=5)
        report(errno=0)
    except OSError as exc:
        report(errno=exc.errno)
    """
    outcome, _ = run_confined(box.policy(uid), body, prelude=prelude)
    assert outcome.last == {"errno": errno.ENETUNREACH}


def test_unix_sockets_of_other_servers_are_hidden(box: Box, uid: int):
    """Landlock does not govern connect() to a socket by path; the worker's /tmp (and /run,
    /var/tmp, /dev/shm) holds only its granted paths, so a server's socket there (as
    PostgreSQL's) cannot be reached."""
    import tempfile
    from pathlib import Path

    elsewhere = Path(tempfile.mkdtemp(prefix="tether-server-", dir="/tmp"))
    elsewhere.chmod(0o755)
    path = elsewhere / "server.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    path.chmod(0o777)  # anyone may connect, as far as file modes go
    listener.listen(1)
    body = f"""
    import socket
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect({str(path)!r})
        report(errno=0)
    except OSError as exc:
        report(errno=exc.errno)
    """
    try:
        outcome, _ = run_confined(box.policy(uid), body)
    finally:
        listener.close()
        path.unlink()
        elsewhere.rmdir()
    assert outcome.last == {"errno": errno.ENOENT}


# --------------------------------------------------------------------------- exec


def test_exec_is_refused_by_seccomp(box: Box, uid: int):
    body = """
    try:
        os.execv("/bin/true", ["true"])
    except OSError as exc:
        report(errno=exc.errno)
    """
    outcome, _ = run_confined(box.policy(uid), body)
    assert outcome.last == {"errno": errno.EPERM}


def test_exec_permission_still_limits_what_runs_to_the_read_paths(box: Box, uid: int):
    body = """
    import subprocess
    allowed = subprocess.run(["/usr/bin/true"]).returncode
    try:
        subprocess.run(["/usr/sbin/nologin"])
        report(allowed=allowed, errno=0)
    except OSError as exc:
        report(allowed=allowed, errno=exc.errno)
    """
    policy = box.policy(uid, exec=True, read=(str(box.plugin_dir), "/usr/bin"))
    outcome, _ = run_confined(policy, body)
    assert outcome.last == {"allowed": 0, "errno": errno.EACCES}


# --------------------------------------------------------------------------- files


def test_files_outside_the_paths_cannot_be_read_or_written(box: Box, uid: int, sleeper):
    body = f"""
    results = {{}}
    def attempt(name, action):
        try:
            action()
            results[name] = 0
        except OSError as exc:
            results[name] = exc.errno
    attempt("read_secret", lambda: open({str(box.secret)!r}).read())
    attempt("read_host_environ", lambda: open("/proc/{os.getpid()}/environ").read())
    attempt("read_sleeper_environ", lambda: open("/proc/{sleeper.pid}/environ").read())
    attempt("write_plugin_dir", lambda: open({str(box.plugin_dir / "new.py")!r}, "w"))
    attempt("write_outside", lambda: open({str(box.base / "dropped")!r}, "w"))
    attempt("list_base", lambda: os.listdir({str(box.base)!r}))
    report(**results)
    """
    outcome, _ = run_confined(box.policy(uid), body)
    assert outcome.last == {
        "read_secret": errno.EACCES,
        "read_host_environ": errno.EACCES,
        "read_sleeper_environ": errno.EACCES,
        "write_plugin_dir": errno.EACCES,
        "write_outside": errno.EACCES,
        "list_base": errno.EACCES,
    }
    assert not (box.base / "dropped").exists()
    assert not (box.plugin_dir / "new.py").exists()


# --------------------------------------------------------------------------- host


def test_the_host_cannot_be_signalled_or_traced(box: Box, uid: int, sleeper):
    body = f"""
    import ctypes, signal
    libc = ctypes.CDLL(None, use_errno=True)
    results = {{}}
    for name, pid in (("sleeper", {sleeper.pid}), ("host", {os.getpid()})):
        try:
            os.kill(pid, signal.SIGKILL)
            results["kill_" + name] = 0
        except OSError as exc:
            results["kill_" + name] = exc.errno
    results["ptrace"] = libc.ptrace(16, {sleeper.pid}, None, None)  # PTRACE_ATTACH
    results["ptrace_errno"] = ctypes.get_errno()
    results["pvm"] = libc.process_vm_readv({sleeper.pid}, None, 0, None, 0, 0)
    results["pvm_errno"] = ctypes.get_errno()
    report(**results)
    """
    outcome, _ = run_confined(box.policy(uid), body)
    result = outcome.last
    # the host's pids do not exist in the worker's PID namespace (ESRCH); without that
    # namespace the uid and Landlock's signal scope answer EPERM
    assert result["kill_sleeper"] in (errno.ESRCH, errno.EPERM)
    assert result["kill_host"] in (errno.ESRCH, errno.EPERM)
    assert (result["ptrace"], result["ptrace_errno"]) == (-1, errno.EPERM)
    assert (result["pvm"], result["pvm_errno"]) == (-1, errno.EPERM)
    assert sleeper.poll() is None


def test_signals_are_refused_even_without_the_pid_namespace(box: Box, uid: int, sleeper):
    prelude = (
        LIGHT_IMPORT
        + """
import json, os, sys
def report(**values):
    print(json.dumps(values), flush=True)
from tether.isolation import _sandbox
applied = _sandbox._apply(_sandbox.Policy.from_json(sys.argv[1]), exec_by_landlock=False,
                          read_extra=_sandbox.interpreter_paths(), fork=False)
"""
    )
    body = f"""
    try:
        os.kill({sleeper.pid}, 9)
        report(errno=0)
    except OSError as exc:
        report(errno=exc.errno)
    """
    outcome, _ = run_confined(box.policy(uid), body, prelude=prelude)
    assert outcome.last == {"errno": errno.EPERM}
    assert sleeper.poll() is None


# --------------------------------------------------------------------------- limits


FORK_BOMB = """
import time
made, failure = 0, None
for _ in range(64):  # bounded: 64 children at most, each gone within 20 s
    try:
        pid = os.fork()
    except OSError as exc:
        failure = exc.errno
        break
    if pid == 0:
        time.sleep(20)
        os._exit(0)
    made += 1
report(made=made, errno=failure)
"""


@needs_cgroups
def test_fork_bomb_is_bounded_by_the_pids_cgroup(box: Box, uid: int):
    outcome, _ = run_confined(box.policy(uid, limits=Limits(processes=8)), FORK_BOMB)
    assert outcome.last["errno"] == errno.EAGAIN
    assert outcome.last["made"] < 8


def test_fork_bomb_is_bounded_by_rlimit_nproc_without_cgroups(box: Box, uid: int):
    policy = box.policy(uid, limits=Limits(processes=8))
    outcome, _ = run_confined(policy, FORK_BOMB, confine=False)
    assert outcome.last["errno"] == errno.EAGAIN
    assert outcome.last["made"] < 8


MEMORY_BOMB = """
chunks = []
try:
    for _ in range(128):  # bounded: 128 x 8 MiB = 1 GiB at most
        chunks.append(b"x" * (8 << 20))
    report(allocated=len(chunks))
except MemoryError:
    chunks.clear()
    report(memory_error=True)
    sys.exit(3)
"""


@needs_cgroups
def test_memory_past_the_limit_is_killed_by_the_cgroup(box: Box, uid: int):
    policy = box.policy(uid, limits=Limits(memory=96 << 20))
    outcome, _ = run_confined(policy, MEMORY_BOMB)
    assert outcome.returncode == -signal.SIGKILL, outcome.reports


def test_memory_past_the_limit_is_a_memory_error_without_cgroups(box: Box, uid: int):
    policy = box.policy(uid, limits=Limits(memory=256 << 20))
    outcome, _ = run_confined(policy, MEMORY_BOMB, confine=False)
    assert outcome.returncode == 3
    assert outcome.last == {"memory_error": True}


def test_cpu_past_the_limit_is_killed(box: Box, uid: int):
    body = """
    import time
    deadline = time.monotonic() + 15  # bounded in wall time too
    while time.monotonic() < deadline:
        pass
    report(survived=True)
    """
    outcome, _ = run_confined(box.policy(uid, limits=Limits(cpu_time=1)), body)
    assert outcome.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    assert outcome.reports == []


def test_open_files_are_limited(box: Box, uid: int):
    body = """
    files = []
    try:
        for _ in range(200):
            files.append(open("/dev/null"))
    except OSError as exc:
        report(opened=len(files), errno=exc.errno)
    """
    outcome, _ = run_confined(box.policy(uid, limits=Limits(open_files=32)), body)
    assert outcome.last["errno"] == errno.EMFILE
    assert outcome.last["opened"] < 32


# --------------------------------------------------------------------------- orphans


GRANDCHILD = """
import time
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(20)  # the grandchild, detached from the worker; bounded
    os._exit(0)
os.waitpid(child, 0)
report(ready=True)
"""


@needs_cgroups
def test_a_grandchild_dies_with_the_worker(box: Box, uid: int):
    seen = {}

    def during(process, confinement):
        process.stdout.readline()  # the report: the grandchild exists
        seen["while_running"] = len(confinement.pids())
        process.wait(10)
        deadline = time.monotonic() + 5
        while confinement.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen["after_exit"] = confinement.pids()

    outcome, _ = run_confined(box.policy(uid), GRANDCHILD, during=during)
    assert outcome.returncode == 0
    assert seen["while_running"] >= 2  # the stub, the worker, the grandchild (maybe done)
    assert seen["after_exit"] == set()


@needs_cgroups
def test_kill_all_leaves_nothing(box: Box, uid: int):
    body = GRANDCHILD + "time.sleep(20)\n"
    seen = {}

    def during(process, confinement):
        process.stdout.readline()
        seen["before"] = len(confinement.pids())
        seen["killed"] = confinement.kill_all()
        seen["after"] = confinement.pids()

    outcome, _ = run_confined(box.policy(uid), body, during=during)
    assert seen["before"] >= 3
    assert seen["killed"] is True
    assert seen["after"] == set()
    assert outcome.returncode == -signal.SIGKILL


@needs_cgroups
def test_usage_reports_memory_and_cpu(box: Box, uid: int):
    seen = {}

    def during(process, confinement):
        process.stdout.readline()
        seen["usage"] = confinement.usage()

    body = "block = b'x' * (32 << 20)\nreport(ready=True)\nimport time; time.sleep(0.5)\n"
    run_confined(box.policy(uid, limits=Limits(memory=256 << 20)), body, during=during)
    usage = seen["usage"]
    assert usage.memory is not None
    assert usage.memory >= 32 << 20
    assert usage.cpu is not None
    assert usage.cpu > 0
    assert usage.processes >= 2


# --------------------------------------------------------------------------- refusals


def _features(**changes) -> KernelFeatures:
    values = FEATURES.to_dict() | changes
    return KernelFeatures(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def test_a_kernel_without_landlock_is_refused_with_a_clear_error():
    steps = _Steps(Policy("strict"), _features(landlock_abi=0, namespaces=[]))
    _precheck(steps, exec_by_landlock=False)
    with pytest.raises(SandboxError) as caught:
        steps.check()
    message = str(caught.value)
    assert message.startswith("plugin 'strict' cannot be isolated as asked:")
    assert "Landlock" in message
    assert "network namespaces" in message
    assert "tether doctor" in caught.value.hint


def test_best_effort_logs_what_is_missing(caplog):
    steps = _Steps(Policy("loose", best_effort=True), _features(landlock_abi=0))
    _precheck(steps, exec_by_landlock=False)
    steps.check()
    assert "Landlock (the kernel has no Landlock ABI)" in steps.missing
    assert "plugin 'loose' runs with best-effort isolation" in caplog.text


def test_policy_round_trips_through_json():
    policy = Policy(
        "p", network=True, read=("/a",), write=("/b",), limits=Limits(memory=1, cpu_time=2.5),
        uid=200123, environment=("X",),
    )  # fmt: skip
    assert Policy.from_json(policy.to_json()) == policy


@needs_cgroups
def test_nothing_survives_the_host(box: Box, uid: int):
    """A stand-in host starts the worker (which leaves a grandchild) and is SIGKILLed:
    the worker and its grandchild die with it (PR_SET_PDEATHSIG, PID namespace)."""
    from sandbox_support import PRELUDE, SRC
    from tether.isolation._sandbox import prepare

    policy = box.policy(uid)
    worker = PRELUDE + GRANDCHILD + "import time; time.sleep(20)\n"
    host = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]],"
        " stdout=subprocess.PIPE, text=True)\n"
        "print(child.pid, flush=True)\n"
        "child.stdout.readline()\n"  # the worker reported: its grandchild exists
        "print('ready', flush=True)\n"
        "time.sleep(20)\n"
    )
    with prepare(policy, name="test-host-death") as confinement:
        stand_in = subprocess.Popen(
            [sys.executable, "-c", host, worker, policy.to_json()],
            stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": SRC},
        )  # fmt: skip
        try:
            confinement.add(int(stand_in.stdout.readline()))
            assert stand_in.stdout.readline().strip() == "ready"
            assert len(confinement.pids()) >= 3
            stand_in.kill()
            stand_in.wait(10)
            deadline = time.monotonic() + 5
            while confinement.pids() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert confinement.pids() == set()
        finally:
            stand_in.kill()
            stand_in.wait(10)
            stand_in.stdout.close()


def test_apply_refuses_to_run_with_threads(box: Box, uid: int):
    prelude = (
        LIGHT_IMPORT
        + """
import json, os, sys, threading, time
def report(**values):
    print(json.dumps(values), flush=True)
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
from tether.isolation._sandbox import Policy, SandboxError, apply
try:
    apply(Policy.from_json(sys.argv[1]))
except SandboxError as exc:
    report(error=str(exc))
"""
    )
    outcome, _ = run_confined(box.policy(uid, best_effort=True), "", prelude=prelude)
    assert outcome.last == {
        "error": "plugin 'attacker' cannot be isolated as asked: apply() ran with 2 threads, "
        "and would confine only the calling one: call it before any thread starts"
    }
