"""The Docker sandbox: container settings, the warm pool, recycling, cleanup, the fork
server's fidelity to a real `python` run. Fails in CI without a daemon (see conftest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from selfrepair.sandbox.build import LABEL, image_tag
from selfrepair.sandbox.container import OWNER_LABEL, DockerSandbox, remove_orphans
from selfrepair.sandbox.core import Limits

pytestmark = pytest.mark.docker
SELFREPAIR = str(Path(sys.executable).parent / "selfrepair")


def test_containers_are_locked_down(docker_sandbox):
    docker_sandbox.warm(1)
    worker = next(w for workers in docker_sandbox.idle.values() for w in workers)
    worker.container.reload()
    host = worker.container.attrs["HostConfig"]
    limits = docker_sandbox.limits
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == host["MemorySwap"] == limits.memory_mb * 1024 * 1024
    assert host["NanoCpus"] == int(limits.cpus * 1e9)
    assert host["PidsLimit"] == limits.pids
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert set(host["Tmpfs"]) == {"/work", "/tests", "/out", "/tmp", "/harness"}
    assert worker.container.labels[LABEL] == "1"


def test_code_runs_as_unprivileged_user_without_network(docker_sandbox):
    probe = (
        "import os, socket\n"
        "print(os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
        "print(sorted(name for _, name in socket.if_nameindex()))\n"
    )
    run = docker_sandbox.execute({"p.py": probe}, ["python", "p.py"])
    assert run.exit_code == 0, run.stderr
    uid_caps, interfaces = run.stdout.splitlines()
    assert uid_caps == "1000 0000000000000000"
    assert interfaces == "['lo']"


def test_fork_server_matches_a_real_python_run(docker_sandbox):
    program = "import sys\nprint(__name__, sys.argv[1:])\nraise ValueError('boom')\n"
    run = docker_sandbox.execute({"m.py": program}, ["python", "m.py", "a", "b"])
    assert run.exit_code == 1
    assert run.stdout == "__main__ ['a', 'b']\n"
    assert run.stderr.startswith('Traceback (most recent call last):\n  File "m.py", line 3')
    assert run.stderr.rstrip().endswith("ValueError: boom")
    execd = docker_sandbox.execute({"m.py": program}, ["sh", "-c", "python m.py a b"])
    assert (execd.exit_code, execd.stdout) == (run.exit_code, run.stdout)
    assert docker_sandbox.execute({}, ["python", "-c", "import sys; sys.exit(4)"]).exit_code == 4


def test_workspace_is_wiped_between_runs(docker_sandbox):
    docker_sandbox.execute({"a.txt": "x"}, ["sh", "-c", "echo y > b.txt; echo z > /tmp/c.txt"])
    run = docker_sandbox.execute({}, ["sh", "-c", "ls -A /work /tmp /out"])
    assert run.stdout.split() == ["/out:", "/tmp:", "/work:"]


def test_a_misbehaving_container_is_replaced_a_good_one_reused(docker_sandbox):
    docker_sandbox.execute({}, ["true"])
    ids_before = {w.container.id for workers in docker_sandbox.idle.values() for w in workers}
    docker_sandbox.execute({}, ["true"])
    ids_after = {w.container.id for workers in docker_sandbox.idle.values() for w in workers}
    assert ids_before == ids_after
    run = docker_sandbox.execute(
        {}, ["python", "-c", "while True: pass"], limits=Limits(wall_seconds=0.5)
    )
    assert run.timed_out
    ids_later = {w.container.id for workers in docker_sandbox.idle.values() for w in workers}
    assert len(ids_later) < len(ids_after) or ids_later != ids_after


def test_orphans_of_a_killed_process_are_removed():
    code = (
        "import os\n"
        "from selfrepair.sandbox.container import DockerSandbox\n"
        "box = DockerSandbox(pool_size=1)\n"
        "print(next(w.container.id for ws in box.idle.values() for w in ws), flush=True)\n"
        "os._exit(0)\n"  # a crash: no atexit, no close
    )
    container_id = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    import docker

    client = docker.from_env()
    assert client.containers.get(container_id).labels[OWNER_LABEL].endswith(tuple("0123456789"))
    remove_orphans(client)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container_id)


def test_close_removes_containers_and_exit_cleans_up():
    code = "from selfrepair.sandbox.container import DockerSandbox\nbox = DockerSandbox(pool_size=1)\nprint(box.client.containers.list(filters={'label': 'selfrepair.sandbox.owner'})[0].labels['selfrepair.sandbox.owner'])\n"
    owner = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    import docker

    left = docker.from_env().containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
    assert left == []


def test_cli_check_and_clean():
    check = subprocess.run(
        [SELFREPAIR, "sandbox", "check", "--kind", "docker"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "network: none" in check.stdout and image_tag() in check.stdout
    clean = subprocess.run([SELFREPAIR, "sandbox", "clean"], capture_output=True, text=True)
    assert clean.returncode == 0 and "removed" in clean.stdout


def test_build_is_a_noop_when_up_to_date():
    build = subprocess.run([SELFREPAIR, "sandbox", "build"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert "up to date" in build.stdout


def test_pool_serves_concurrent_runs(docker_sandbox):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        runs = list(
            pool.map(
                lambda i: docker_sandbox.execute({}, ["python", "-c", f"print({i})"]), range(8)
            )
        )
    assert [run.stdout.strip() for run in runs] == [str(i) for i in range(8)]
    assert isinstance(docker_sandbox, DockerSandbox) and docker_sandbox.busy == 0
