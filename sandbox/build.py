"""Build the sandbox image locally; it is never pulled.

Two recipes make the same image (Debian bookworm, python3, python3-pytest):
  dockerfile  `docker build` of image/Dockerfile; needs debian:bookworm-slim already present
              locally (a machine with a registry pulls it first).
  offline     `debootstrap --variant=minbase` into a folder, then `docker import` of it;
              needs root and a Debian mirror, no container registry.
The default picks the Dockerfile only when its base image is already here, so a build never
tries to reach a registry unless asked to. The image's tag is a hash of the recipe: a build
is a no-op while an image with that tag exists.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from selfrepair.config import cache_dir
from selfrepair.errors import SelfRepairError

REPOSITORY = "selfrepair-sandbox"
BASE_IMAGE = "debian:bookworm-slim"
PACKAGES = ("python3", "python3-pytest")
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LABEL = "selfrepair.sandbox"
MOUNT_POINTS = ("work", "tests", "out")


def dockerfile_text() -> str:
    return resources.files("selfrepair.sandbox").joinpath("image/Dockerfile").read_text()


def image_tag() -> str:
    """The image name: the recipe's hash, so a changed recipe means a new image."""
    recipe = "\n".join([dockerfile_text(), SUITE, *PACKAGES, *MOUNT_POINTS, "usr/bin/python"])
    return f"{REPOSITORY}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def image_present(client) -> bool:
    import docker.errors

    try:
        client.images.get(image_tag())
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(
    client, recipe: str = "auto", say: Callable[[str], None] = print, mirror: str | None = None
) -> str:
    """Make the image exist; returns what was done. recipe: "auto", "dockerfile" or "offline"."""
    tag = image_tag()
    if image_present(client):
        return f"{tag} is up to date"
    if recipe == "auto":
        recipe = "dockerfile" if _has_image(client, BASE_IMAGE) else "offline"
    if recipe == "dockerfile":
        say(f"building {tag} from the Dockerfile (base {BASE_IMAGE})")
        _build_from_dockerfile(client, tag)
    elif recipe == "offline":
        say(f"building {tag} offline: debootstrap {SUITE} + docker import (about a minute)")
        _build_offline(client, tag, mirror or _apt_mirror(), say)
    else:
        raise SelfRepairError(
            f"unknown image recipe {recipe!r}: choose auto, dockerfile or offline"
        )
    _remove_stale_images(client, tag)
    return f"built {tag} ({recipe})"


def _remove_stale_images(client, keep: str) -> None:
    """Images of older recipes are dead weight; one still used by a container stays."""
    import docker.errors

    for image in client.images.list(name=REPOSITORY):
        if keep not in image.tags:
            try:
                client.images.remove(image.id)
            except docker.errors.APIError:
                pass


def _has_image(client, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _build_from_dockerfile(client, tag: str) -> None:
    import docker.errors

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        data = dockerfile_text().encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    context.seek(0)
    try:
        # pull=False: the base must already be here; nothing reaches for a registry.
        client.images.build(
            fileobj=context, custom_context=True, tag=tag, pull=False, rm=True, labels={LABEL: "1"}
        )
    except (docker.errors.BuildError, docker.errors.APIError) as error:
        raise SelfRepairError(f"docker build of the sandbox image failed: {error}") from error


def _build_offline(client, tag: str, mirror: str, say: Callable[[str], None]) -> None:
    debootstrap = _ensure_debootstrap(say)
    work = cache_dir() / "sandbox-build"
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "debootstrap.log"
    with tempfile.TemporaryDirectory(dir=work) as folder:
        rootfs = Path(folder) / "rootfs"
        say(f"debootstrap into {rootfs} (log: {log_path})")
        with log_path.open("w") as log:
            done = subprocess.run(
                [
                    debootstrap,
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    SUITE,
                    str(rootfs),
                    mirror,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if done.returncode != 0:
            raise SelfRepairError(f"debootstrap failed (exit {done.returncode}); see {log_path}")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        for name in MOUNT_POINTS:
            (rootfs / name).mkdir(exist_ok=True)
        python = rootfs / "usr/bin/python"
        if not python.exists():
            python.symlink_to("python3")
        say("docker import")
        archive = Path(folder) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        repository, version = tag.split(":")
        client.api.import_image(
            src=str(archive), repository=repository, tag=version, changes=[f'LABEL {LABEL}="1"']
        )
    if not image_present(client):
        raise SelfRepairError(f"docker import did not produce {tag}")


def _ensure_debootstrap(say: Callable[[str], None]) -> str:
    found = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise SelfRepairError(
            "the offline image build needs debootstrap; install it (Debian package 'debootstrap')"
        )
    say("installing debootstrap (apt-get)")
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "debootstrap"]):
        if subprocess.run(step, capture_output=True).returncode != 0:
            raise SelfRepairError(
                f"`{' '.join(step)}` failed; install debootstrap by hand (needs root)"
            )
    found = shutil.which("debootstrap", path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        raise SelfRepairError("debootstrap is still missing after apt-get install")
    return found


def _apt_mirror() -> str:
    """This machine's own Debian mirror, where apt names one; else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(":", 1)[1].strip().split()[0]
    return DEFAULT_MIRROR
