"""The Docker sandbox: a warm pool of locked-down containers, each running a fork server.

Every container: no network, a memory limit with no swap beyond it, a CPU quota, a pids
limit, a read-only root, tmpfs for /work, /tests, /out and /tmp, every capability dropped
but the few its supervisor needs to drop privileges, kill and wipe (the code under test
runs as uid 1000 with none), no-new-privileges, and labels so leftovers can be found.

A container serves one run at a time and is reused while it behaves; one that timed out,
ran out of memory, left processes, wrote outside its workspace or touched the tests is
removed and a fresh one takes its place. Containers go away on close(), at interpreter
exit, on SIGTERM, and, after a crash, at the next start (their owner process is gone) or
with `selfrepair sandbox clean`.

Nothing can be lost to a stop at a bad moment: every container carries its sandbox's own
label from the moment Docker creates it, containers are made only in threads made for it
(a stop signal, raised in the main thread, interrupts a wait, never a request half-sent),
and close() waits for the containers being made and then removes everything with that
label, whether or not it was ever handed back to the pool.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import struct
import tarfile
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from selfrepair.sandbox import supervise
from selfrepair.sandbox.build import LABEL, image_present, image_tag
from selfrepair.sandbox.core import (
    GUARD_PLUGIN,
    Execution,
    Limits,
    Workspace,
    expand_command,
    harness_files,
    safe_relative,
)

from selfrepair.errors import SelfRepairError

OWNER_LABEL = "selfrepair.sandbox.owner"
SESSION_LABEL = "selfrepair.sandbox.session"  # one DockerSandbox's containers
PATHS = {"workspace": "/work", "tests": "/tests", "out": "/out"}
HARNESS = "/harness"
# The supervisor's capabilities; the child drops all of them when it becomes uid 1000.
SUPERVISOR_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"]
TESTS_MB = 64
OUT_MB = 64
TMP_MB = 64
HARNESS_MB = 4
SHM_MB = 16
SERVER_GRACE_SECONDS = 30  # beyond the run's own limit, before the host gives up on a container
CONNECT_TIMEOUT = 5
START_TIMEOUT = 120  # how long close() waits for containers being made before it sweeps


def docker_unavailable() -> str | None:
    """Why the Docker sandbox cannot run here, or None when it can."""
    try:
        client = docker_client()
    except SelfRepairError as error:
        return str(error)
    if not image_present(client):
        return f"the sandbox image {image_tag()} is not built (run `selfrepair sandbox build`)"
    return None


def docker_client():
    import docker

    try:
        client = docker.from_env(timeout=CONNECT_TIMEOUT)
        client.ping()
    except Exception as error:  # the SDK raises several types for "no daemon"
        raise SelfRepairError(
            f"no Docker daemon answers ({type(error).__name__}); start one, e.g. scripts/docker-engine.sh"
        ) from error
    return client


def server_launcher() -> str:
    """The `python3 -c` program that starts the fork server inside a container."""
    package = resources.files("selfrepair.sandbox")
    paths_source = resources.files("selfrepair").joinpath("paths.py").read_text()
    supervise_source = package.joinpath("supervise.py").read_text()
    server_source = package.joinpath("forkserver.py").read_text()
    return (
        "import types\n"
        "paths = types.ModuleType('paths')\n"
        f"exec(compile({paths_source!r}, 'paths.py', 'exec'), paths.__dict__)\n"
        "supervise = types.ModuleType('supervise')\n"
        "supervise.paths = paths\n"
        f"exec(compile({supervise_source!r}, 'supervise.py', 'exec'), supervise.__dict__)\n"
        f"exec(compile({server_source!r}, '<forkserver>', 'exec'), "
        "{'__name__': '__main__', 'supervise': supervise})\n"
    )


class Worker:
    """One warm container and the attached stream to its fork server."""

    def __init__(
        self, client, limits: Limits, launcher: str, python_path: list[Path], session: str
    ) -> None:
        memory = f"{limits.memory_mb}m"
        self.limits_key = _pool_key(limits)
        self.container = client.containers.run(
            image_tag(),
            command=["python3", "-c", launcher],
            detach=True,
            stdin_open=True,
            network_mode="none",
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            read_only=True,
            tmpfs={
                "/work": f"size={limits.workspace_mb}m,mode=0755,exec",
                "/tests": f"size={TESTS_MB}m,mode=0755",
                "/out": f"size={OUT_MB}m,mode=0755",
                "/tmp": f"size={TMP_MB}m,mode=1777",
                HARNESS: f"size={HARNESS_MB}m,mode=0755",
            },
            volumes={
                str(folder): {"bind": f"/deps/{i}", "mode": "ro"}
                for i, folder in enumerate(python_path)
            },
            shm_size=f"{SHM_MB}m",
            cap_drop=["ALL"],
            cap_add=SUPERVISOR_CAPS,
            security_opt=["no-new-privileges"],
            user="0:0",
            labels={LABEL: "1", OWNER_LABEL: _owner(), SESSION_LABEL: session},
        )
        self.sock: socket.socket | None = None
        try:
            attached = self.container.attach_socket(
                params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self.sock = attached._sock
            self._keep = attached  # the SDK's wrapper closes the socket when collected
            self.buffer = b""
            self.server_errors = b""
            # The server's first line: the harness it writes under /harness and imports once.
            self.sock.sendall(json.dumps({"harness": harness_files()}).encode() + b"\n")
        except BaseException:
            self.remove()
            raise

    def request(self, payload: dict, timeout: float) -> dict:
        self.sock.settimeout(timeout)
        self.sock.sendall(json.dumps(payload).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):
            stream, data = self._frame()
            if stream == 2:
                self.server_errors += data
            else:
                line += data
        return json.loads(line)

    def _frame(self) -> tuple[int, bytes]:
        # The attach stream is multiplexed: 8-byte header (stream, 0, 0, 0, big-endian size).
        header = self._exactly(8)
        stream, size = struct.unpack(">BxxxL", header)
        return stream, self._exactly(size)

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(
                    f"the sandbox server ended: {self.server_errors.decode(errors='replace')[-500:]}"
                )
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def remove(self) -> None:
        try:
            if self.sock is not None:
                self.sock.close()
        except OSError:
            pass
        try:
            self.container.remove(force=True)
        except Exception:  # already gone (a crash, a concurrent clean): nothing left to do
            pass


class DockerSandbox:
    name = "docker"

    def __init__(
        self,
        limits: Limits | None = None,
        pool_size: int | None = None,
        python_path: Sequence[Path] = (),
    ) -> None:
        self.python_path = [Path(p).resolve() for p in python_path]
        for folder in self.python_path:
            if not folder.is_dir():
                raise SelfRepairError(f"python path {folder} is not a directory")
        self.client = docker_client()
        if not image_present(self.client):
            raise SelfRepairError(
                f"the sandbox image {image_tag()} is not built (run `selfrepair sandbox build`)"
            )
        self.limits = limits or Limits()
        self.pool_size = max(1, pool_size or min(4, os.cpu_count() or 1))
        self.launcher = server_launcher()
        self.idle: dict[tuple, list[Worker]] = {}
        self.busy = 0
        self.starting = 0  # containers being made, in threads of their own
        self.closed = False
        self.session = secrets.token_hex(8)
        self.lock = threading.Condition()
        remove_orphans(self.client)
        _register_cleanup(self)
        self.warm(self.pool_size)

    def isolation(self) -> list[str]:
        limits = self.limits
        return [
            f"docker: image {image_tag()}, a warm pool of {self.pool_size} container(s) with a fork server",
            "network: none (network_mode=none)",
            f"memory: {limits.memory_mb} MB, no swap beyond it (memswap_limit = mem_limit)",
            f"cpu: {limits.cpus:g} CPU(s) (nano_cpus); pids: at most {limits.pids}",
            "filesystem: read-only root; tmpfs /work, /tests, /out, /tmp, /harness"
            + (
                f"; {len(self.python_path)} dependency folder(s) read-only under /deps"
                if self.python_path
                else ""
            ),
            "user: code runs as uid 1000 with no capabilities, in a process forked before its run's "
            "request arrived; no-new-privileges; the supervisor keeps "
            + ", ".join(SUPERVISOR_CAPS),
            "verdict: a judge (uid 1001) alone reads the tests (/tests is its own, mode 0500), calls the "
            "candidate through a socket on plain data and writes the verdict to a pipe only the supervisor reads",
            f"time: {limits.wall_seconds:g} s wall clock per run, then every process in the container is killed",
            f"output: {limits.output_bytes} bytes kept per stream, the rest cut and counted",
            "hygiene: workspace wiped after each run; a container that misbehaved is replaced",
        ]

    def warm(self, count: int, limits: Limits | None = None) -> None:
        """Start containers up to `count` idle ones for `limits`, in parallel."""
        limits = limits or self.limits
        key = _pool_key(limits)
        with self.lock:
            missing = min(count, self.pool_size) - len(self.idle.get(key, []))
        starts = [self._start(limits) for _ in range(max(0, missing))]
        started = [start.result() for start in starts]
        with self.lock:
            self.idle.setdefault(key, []).extend(started)
            self._trim()

    def _start(self, limits: Limits) -> _Start:
        """Begin making one container, in a thread of its own; counted as being made until
        that thread ends, so close() can wait for it."""
        with self.lock:
            if self.closed:
                raise SelfRepairError("the Docker sandbox is closed")
            self.starting += 1
        return _Start(
            lambda: Worker(self.client, limits, self.launcher, self.python_path, self.session),
            self._started,
        )

    def _started(self) -> None:
        with self.lock:
            self.starting -= 1
            self.lock.notify_all()

    def execute(
        self,
        workspace: Workspace,
        command: Sequence[str],
        *,
        tests: Mapping[str, str] | None = None,
        limits: Limits | None = None,
        collect: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Execution:
        environment = self._environment() | {
            "PYTHONPATH": ":".join([HARNESS, PATHS["workspace"], *self._deps()]),
            "SELFREPAIR_CHANNEL": "3",
            **GUARD_PLUGIN,
            **(env or {}),
        }
        payload = {
            "argv": expand_command(command, PATHS),
            "env": environment,
            "collect": list(collect),
        }
        return self._run(workspace, payload, tests, limits or self.limits)

    def judge(
        self,
        workspace: Workspace,
        config: dict,
        *,
        tests: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> Execution:
        environment = self._environment() | {
            "PYTHONPATH": ":".join([PATHS["workspace"], *self._deps()])
        }
        payload = {
            "argv": [],
            "judge": {**config, "path": self._deps()},
            "env": environment,
            "collect": [],
        }
        return self._run(workspace, payload, tests, limits or self.limits)

    def _environment(self) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "SELFREPAIR_WORKSPACE": PATHS["workspace"],
            "SELFREPAIR_TESTS": PATHS["tests"],
            "SELFREPAIR_OUT": PATHS["out"],
        }

    def _deps(self) -> list[str]:
        return [f"/deps/{i}" for i in range(len(self.python_path))]

    def _run(
        self, workspace: Workspace, payload: dict, tests: Mapping[str, str] | None, limits: Limits
    ) -> Execution:
        payload |= {
            "tests": {safe_relative(path): text for path, text in (tests or {}).items()},
            "wall_seconds": limits.wall_seconds,
            "output_bytes": limits.output_bytes,
            "file_size_mb": limits.file_size_mb,
            **_workspace_payload(workspace),
        }
        before = _test_files_of(workspace)
        worker = self._acquire(limits)
        try:
            reply = worker.request(payload, limits.wall_seconds + SERVER_GRACE_SECONDS)
        except (OSError, ConnectionError, ValueError) as error:
            self._release(worker, healthy=False)
            return self._lost_run(worker, limits, error)
        except BaseException:
            # Cut short by Ctrl-C or a stop signal: the run's state is unknown and the process
            # is on its way out, so the container goes now, not in a thread that exit would cut.
            with self.lock:
                self.busy -= 1
                self.lock.notify()
            worker.remove()
            raise
        if "error" in reply:
            self._release(worker, healthy=False)
            raise SelfRepairError(f"the sandbox server failed: {reply['error']}")
        self._release(worker, healthy=not reply["recycle"])
        artifacts = {name: base64.b64decode(data) for name, data in reply["artifacts"].items()}
        notes = list(reply["notes"])
        after = reply.get("workspace_tests")
        if after is not None and supervise.changed_test_files(before, after):
            changed = ", ".join(supervise.changed_test_files(before, after)[:5])
            notes.append(f"the tests were modified during the run (in the workspace: {changed})")
        return Execution(
            exit_code=reply["exit_code"],
            stdout=reply["stdout"],
            stderr=reply["stderr"],
            stdout_cut_bytes=reply["stdout_cut_bytes"],
            stderr_cut_bytes=reply["stderr_cut_bytes"],
            wall_seconds=reply["wall_seconds"],
            cpu_seconds=reply["cpu_seconds"],
            timed_out=reply["timed_out"],
            out_of_memory=reply["out_of_memory"],
            artifacts=artifacts,
            channel=base64.b64decode(reply["channel"]),
            sandbox=self.name,
            notes=notes,
        )

    def _lost_run(self, worker: Worker, limits: Limits, error: Exception) -> Execution:
        """The server died or went silent: the container is gone; say what is known."""
        state = {}
        try:
            worker.container.reload()
            state = worker.container.attrs.get("State", {})
        except Exception:
            pass
        out_of_memory = bool(state.get("OOMKilled"))
        timed_out = isinstance(error, socket.timeout)
        return Execution(
            exit_code=None,
            stderr=f"the sandbox container failed during the run: {type(error).__name__}: {error}",
            timed_out=timed_out,
            out_of_memory=out_of_memory,
            wall_seconds=limits.wall_seconds if timed_out else 0.0,
            sandbox=self.name,
            notes=["container lost; replaced"],
        )

    def _acquire(self, limits: Limits) -> Worker:
        key = _pool_key(limits)
        with self.lock:
            while True:
                if self.closed:
                    raise SelfRepairError("the Docker sandbox is closed")
                if self.idle.get(key):
                    self.busy += 1
                    return self.idle[key].pop()
                if self.busy + self._idle_count() < self.pool_size or self._drop_other_idle(key):
                    self.busy += 1
                    break
                self.lock.wait()
        try:
            return self._start(limits).result()
        except BaseException:
            with self.lock:
                self.busy -= 1
                self.lock.notify()
            raise

    def _release(self, worker: Worker, healthy: bool) -> None:
        with self.lock:
            self.busy -= 1
            if healthy and not self.closed:
                self.idle.setdefault(worker.limits_key, []).append(worker)
                worker = None
            self.lock.notify()
        if worker is not None:
            # Replaced, not reused; removal runs aside so the next run need not wait for it.
            threading.Thread(target=worker.remove, daemon=True).start()

    def _idle_count(self) -> int:
        return sum(len(workers) for workers in self.idle.values())

    def _drop_other_idle(self, key: tuple) -> bool:
        """Make room for limits nobody has warmed: retire an idle container of other limits."""
        for other, workers in self.idle.items():
            if other != key and workers:
                threading.Thread(target=workers.pop().remove, daemon=True).start()
                return True
        return False

    def _trim(self) -> None:
        while self._idle_count() + self.busy > self.pool_size:
            if not self._drop_other_idle(()):
                break

    def close(self) -> None:
        """Remove every container of this sandbox: the pool's, those busy or being replaced,
        and those still being made (waited for first). Safe to call again."""
        with self.lock:
            self.closed = True
            workers = [worker for workers in self.idle.values() for worker in workers]
            self.idle.clear()
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.starting == 0, timeout=START_TIMEOUT)
        for worker in workers:
            worker.remove()
        remove_labelled(self.client, f"{SESSION_LABEL}={self.session}")


class _Start:
    """A container being made in a thread of its own. The thread always runs to its end,
    so a Docker call is never cut halfway by a stop signal (that would leave a container
    Docker makes after the sweep that should have removed it)."""

    def __init__(self, make, done) -> None:
        self.worker: Worker | None = None
        self.error: BaseException | None = None
        self.make, self.done = make, done
        self.thread = threading.Thread(target=self._run, name="selfrepair-container-start")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker = self.make()
        except BaseException as error:
            self.error = error
        finally:
            self.done()

    def result(self) -> Worker:
        self.thread.join()
        if self.error is None:
            return self.worker
        if isinstance(self.error, Exception) and not isinstance(self.error, SelfRepairError):
            raise SelfRepairError(f"cannot start a sandbox container: {self.error}") from self.error
        raise self.error


def _pool_key(limits: Limits) -> tuple:
    # Containers are made for their memory, CPU, pids and workspace size; time and output
    # limits are per run, so they do not split the pool.
    return (limits.memory_mb, limits.cpus, limits.pids, limits.workspace_mb)


def _test_files_of(workspace: Workspace) -> dict[str, str]:
    """`supervise.test_files` of the workspace as it will land in the container."""
    if isinstance(workspace, Path):
        return supervise.test_files(str(workspace))
    return {
        safe_relative(path): hashlib.sha256(
            content if isinstance(content, bytes) else content.encode()
        ).hexdigest()
        for path, content in workspace.items()
        if supervise.is_test_code(safe_relative(path))
    }


def _workspace_payload(workspace: Workspace) -> dict:
    if isinstance(workspace, Path):
        if not workspace.is_dir():
            raise SelfRepairError(f"workspace {workspace} is not a directory")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            tar.add(workspace, arcname=".")
        return {"tar": base64.b64encode(archive.getvalue()).decode()}
    files = {}
    for path, content in workspace.items():
        data = content if isinstance(content, bytes) else content.encode()
        files[safe_relative(path)] = base64.b64encode(data).decode()
    return {"files": files}


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def remove_labelled(client, label: str) -> None:
    """Remove every container (running or not) with `label` (KEY=VALUE). Sparse: the
    listing alone, so a container removed meanwhile is no error."""
    try:
        found = client.containers.list(all=True, sparse=True, filters={"label": label})
    except Exception:  # the daemon went away: the next start removes them as orphans
        return
    for container in found:
        try:
            container.remove(force=True)
        except Exception:  # removed meanwhile (a replaced container's own removal)
            pass


def remove_orphans(client, everything: bool = False) -> int:
    """Remove sandbox containers whose owner process is gone (or all of them); how many."""
    removed = 0
    for container in client.containers.list(all=True, sparse=True, filters={"label": LABEL}):
        owner = (container.attrs.get("Labels") or {}).get(OWNER_LABEL, "")
        if everything or not _owner_alive(owner):
            try:
                container.remove(force=True)
                removed += 1
            except Exception:  # removed meanwhile by someone else
                pass
    return removed


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's, or unknown (a shared daemon): leave it alone
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_open_sandboxes: list[DockerSandbox] = []
_handlers_installed = False


def _register_cleanup(sandbox: DockerSandbox) -> None:
    """Containers go on interpreter exit (atexit; Ctrl-C ends in it too) and on SIGTERM/SIGHUP."""
    global _handlers_installed
    _open_sandboxes.append(sandbox)
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _exit_on_signal)


def _close_all() -> None:
    while _open_sandboxes:
        _open_sandboxes.pop().close()


def _exit_on_signal(signum, _frame) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
