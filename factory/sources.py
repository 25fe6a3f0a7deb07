"""Where synthesized bugs come from: a package's source tree with its own tests.

A SOURCE is one of
  a PyPI requirement    `toolz==1.0.0`: its sdist, fetched with
                        `pip download --no-binary :all: --no-deps` (a wheel carries no tests)
  a local sdist         `toolz-1.0.0.tar.gz` (or .zip)
  a git repository      its HEAD commit (committed files only: the work tree may be mid-edit)
  a directory           its files, less caches and build output

Each becomes a Source: the snapshot's files in memory, the package's declared runtime and
test requirements, and the names it goes by in the output (`repo` is SWE-bench's field,
`pypi/toolz-1.0.0`; its mirror folder is `pypi__toolz-1.0.0`). A source that cannot be used
(no Python files, no tests, not on the index, an index that does not answer) is refused with
a SelfRepairError saying which and why, before anything is written.
"""

from __future__ import annotations

import configparser
import email.parser
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from selfrepair.errors import SelfRepairError
from selfrepair.loaders import SKIPPED_DIRS
from selfrepair.paths import is_test_file

MAX_FILE_BYTES = 4_000_000  # a bigger file is data, not code or tests (test_more.py is 256 kB)
ARCHIVES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")
TEST_EXTRAS = ("test", "tests", "testing")
PIP_TIMEOUT_S = 600
# The sandbox image's interpreter: markers in a package's requirements are read for it.
SANDBOX_PYTHON = "3.11"


@dataclass
class Source:
    spec: str  # as the user wrote it
    kind: Literal["pypi", "sdist", "git", "directory"]
    name: str
    version: str
    files: dict[str, bytes]  # the snapshot, by relative POSIX path
    origin: str  # what was read: the sdist's file name, the repository path and commit
    requirements: list[str] = field(default_factory=list)

    @property
    def repo(self) -> str:
        """SWE-bench's `repo` field, OWNER/NAME: `pypi/NAME-VERSION` for an sdist (two versions
        of a package are two repositories), `local/NAME` for a repository or directory."""
        if self.kind in ("pypi", "sdist"):
            return f"pypi/{slug(self.name)}-{slug(self.version)}"
        return f"local/{slug(self.name)}"

    @property
    def slug(self) -> str:
        """The mirror's folder name, as the SWE-bench harness names repositories (OWNER__NAME)."""
        return self.repo.replace("/", "__")

    def text_files(self) -> dict[str, str]:
        """The files that are text (UTF-8): what a Task can carry. A binary file is left out."""
        texts = {}
        for path, data in self.files.items():
            try:
                texts[path] = data.decode("utf-8")
            except UnicodeDecodeError:
                continue
        return texts

    def test_files(self) -> list[str]:
        return sorted(p for p in self.files if is_test_file(p) and p.endswith(".py"))

    def code_files(self) -> list[str]:
        """Python files that are the package's code: not tests, not build scripts."""
        return sorted(
            p for p in self.files if p.endswith(".py") and not is_test_file(p) and not is_tooling(p)
        )


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def is_tooling(path: str) -> bool:
    """Files that build, document or version a package rather than being it."""
    parts = PurePosixPath(path).parts
    return parts[-1] in (
        "setup.py",
        "conftest.py",
        "noxfile.py",
        "fabfile.py",
        "versioneer.py",
        "_version.py",
    ) or parts[0] in (
        "docs",
        "doc",
        "examples",
        "example",
        "benchmarks",
        "bench",
        "scripts",
        "tools",
        "ci",
    )


def skipped(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        bool(SKIPPED_DIRS.intersection(parts[:-1]))
        or any(part.endswith(".egg-info") for part in parts[:-1])
        or parts[-1].endswith((".pyc", ".pyo"))
    )


# ---------------------------------------------------------------- resolving a SOURCE


def resolve(spec: str) -> Source:
    """The Source a SOURCE argument names, checked: it has Python code and it has tests."""
    spec = spec.strip()
    if not spec:
        raise SelfRepairError(
            "an empty SOURCE: give a PyPI requirement (toolz==1.0.0), a git repository or a directory"
        )
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir():
            source = (
                from_git(spec, path) if (path / ".git").exists() else from_directory(spec, path)
            )
        elif path.name.endswith(ARCHIVES):
            source = from_archive(spec, path, kind="sdist")
        else:
            raise SelfRepairError(
                f"{spec}: not a directory, a git repository or an sdist archive ({', '.join(ARCHIVES)})"
            )
    elif "/" in spec or spec.startswith("."):
        raise SelfRepairError(f"{spec}: no such file or directory")
    else:
        source = from_pypi(spec)
    check(source)
    return source


def check(source: Source) -> None:
    if not source.code_files():
        raise SelfRepairError(f"{source.spec}: holds no Python files to put bugs in")
    if not source.test_files():
        what = "its sdist carries" if source.kind in ("pypi", "sdist") else "it holds"
        raise SelfRepairError(
            f"{source.spec}: {what} no tests (no test_*.py, *_test.py or tests/ files); "
            "synth validates every bug with the package's own tests"
        )


def from_directory(spec: str, root: Path) -> Source:
    files = {}
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root).as_posix()
        if (
            file.is_file()
            and not file.is_symlink()
            and not skipped(relative)
            and file.stat().st_size <= MAX_FILE_BYTES
        ):
            files[relative] = file.read_bytes()
    name = root.resolve().name
    return Source(
        spec=spec,
        kind="directory",
        name=name,
        version="dir",
        files=files,
        origin=str(root.resolve()),
        requirements=declared_requirements(files),
    )


def from_git(spec: str, root: Path) -> Source:
    """The committed tree at HEAD (gitpython reads the blobs; the work tree is not looked at)."""
    import git

    try:
        repo = git.Repo(root)
        commit = repo.head.commit
    except (git.InvalidGitRepositoryError, ValueError):
        raise SelfRepairError(f"{spec}: a git repository with no commit yet") from None
    files = {}
    for blob in commit.tree.traverse():
        if (
            blob.type == "blob"
            and not skipped(blob.path)
            and blob.size <= MAX_FILE_BYTES
            and blob.mode != 0o120000
        ):
            files[blob.path] = blob.data_stream.read()
    name = Path(repo.working_tree_dir or root).resolve().name
    return Source(
        spec=spec,
        kind="git",
        name=name,
        version=commit.hexsha[:12],
        files=files,
        origin=f"{Path(repo.working_tree_dir).resolve()}@{commit.hexsha}",
        requirements=declared_requirements(files),
    )


def from_archive(
    spec: str, archive: Path, kind: Literal["pypi", "sdist"], requirement: str | None = None
) -> Source:
    """An sdist: its files, less the top folder every sdist puts them in."""
    try:
        members = read_archive(archive)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise SelfRepairError(f"{spec}: cannot read the archive {archive.name}: {error}") from None
    tops = {path.split("/", 1)[0] for path in members}
    if len(tops) == 1 and all("/" in path for path in members):
        members = {path.split("/", 1)[1]: data for path, data in members.items()}
    files = {p: d for p, d in members.items() if not skipped(p) and len(d) <= MAX_FILE_BYTES}
    name, version = sdist_name(archive.name, files.get("PKG-INFO"))
    return Source(
        spec=spec,
        kind=kind,
        name=name,
        version=version,
        files=files,
        origin=archive.name,
        requirements=declared_requirements(files),
    )


def read_archive(archive: Path) -> dict[str, bytes]:
    """Regular files of a tar or zip archive by their (safe, relative) names; links and
    anything climbing out with '..' are dropped, as tarfile's "data" filter would."""
    members: dict[str, bytes] = {}
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                name = safe_name(info.filename)
                if name and not info.is_dir():
                    members[name] = handle.read(info)
        return members
    with tarfile.open(archive) as handle:
        for member in handle:
            name = safe_name(member.name)
            if name and member.isreg():
                extracted = handle.extractfile(member)
                if extracted is not None:
                    members[name] = extracted.read()
    return members


def safe_name(name: str) -> str | None:
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if not parts or name.startswith("/") or ".." in parts:
        return None
    return "/".join(parts)


def sdist_name(file_name: str, pkg_info: bytes | None) -> tuple[str, str]:
    if pkg_info:
        message = email.parser.BytesParser().parsebytes(pkg_info)
        if message.get("Name") and message.get("Version"):
            return str(message["Name"]), str(message["Version"])
    stem = file_name
    for suffix in ARCHIVES:
        stem = stem.removesuffix(suffix)
    name, _, version = stem.rpartition("-")
    return (name or stem), (version or "0")


def from_pypi(spec: str) -> Source:
    """Fetch the requirement's sdist with pip into a temporary folder and read it."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(spec)
    except InvalidRequirement:
        raise SelfRepairError(
            f"{spec}: not a path, and not a PyPI requirement (e.g. toolz==1.0.0)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="selfrepair-sdist-") as folder:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            folder,
            spec,
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SelfRepairError(
                f"{spec}: pip download took longer than {PIP_TIMEOUT_S} s"
            ) from None
        if result.returncode != 0:
            raise SelfRepairError(f"{spec}: {pip_reason(result.stderr, requirement.name)}")
        archives = [p for p in Path(folder).iterdir() if p.name.endswith(ARCHIVES)]
        if not archives:
            raise SelfRepairError(
                f"{spec}: pip found no sdist of {requirement.name} (only wheels, which carry no tests)"
            )
        source = from_archive(spec, archives[0], kind="pypi")
    return source


def pip_reason(stderr: str, name: str) -> str:
    """pip's failure as one line a user can act on. An index that does not answer shows only
    in pip's retry warnings, before its "no matching distribution"; so that is looked for first."""
    text = stderr.lower()
    if any(
        word in text
        for word in (
            "connection",
            "network is unreachable",
            "timed out",
            "name resolution",
            "max retries",
            "proxy",
            "ssl",
        )
    ):
        return "cannot reach the package index (pip download failed); check the network or give a local sdist"
    if "no matching distribution" in text or "could not find a version" in text:
        return f"no sdist of {name} matching this requirement on the package index"
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.lstrip().startswith("WARNING")
    ]
    return "pip download failed: " + (lines[-1] if lines else "no message")


# ---------------------------------------------------------------- requirements


def declared_requirements(files: dict[str, bytes]) -> list[str]:
    """What the package says it needs at run time and for its tests (extras named test,
    tests or testing), for the sandbox's Python: PKG-INFO's Requires-Dist, else pyproject's
    [project] table, else setup.cfg's [options]. A setup.py is never run to find out."""
    from packaging.markers import InvalidMarker
    from packaging.requirements import InvalidRequirement, Requirement

    lines: list[str] = []
    if "PKG-INFO" in files:
        message = email.parser.BytesParser().parsebytes(files["PKG-INFO"])
        lines = [str(value) for value in message.get_all("Requires-Dist") or []]
    if not lines and "pyproject.toml" in files:
        try:
            import tomllib  # Python 3.11+; on 3.10 a pyproject's table goes unread

            project = tomllib.loads(files["pyproject.toml"].decode("utf-8")).get("project", {})
        except (ImportError, ValueError, UnicodeDecodeError):  # TOMLDecodeError is a ValueError
            project = {}
        lines = list(project.get("dependencies", []))
        for extra in TEST_EXTRAS:
            lines += [
                f"{r}; extra == '{extra}'" if ";" not in r else r
                for r in project.get("optional-dependencies", {}).get(extra, [])
            ]
    if not lines and "setup.cfg" in files:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(files["setup.cfg"].decode("utf-8"))
            lines = [
                r
                for r in parser.get("options", "install_requires", fallback="").splitlines()
                if r.strip()
            ]
            for extra in TEST_EXTRAS:
                lines += [
                    r
                    for r in parser.get("options.extras_require", extra, fallback="").splitlines()
                    if r.strip()
                ]
        except (configparser.Error, UnicodeDecodeError):
            pass
    python = SANDBOX_PYTHON
    wanted = []
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None:
            try:
                environments = [
                    {
                        "extra": extra,
                        "python_version": python,
                        "python_full_version": f"{python}.0",
                        "sys_platform": "linux",
                        "platform_system": "Linux",
                        "os_name": "posix",
                    }
                    for extra in ("", *TEST_EXTRAS)
                ]
                if not any(requirement.marker.evaluate(env) for env in environments):
                    continue
            except InvalidMarker:
                continue
        text = (
            requirement.name
            + (f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else "")
            + str(requirement.specifier)
        )
        if text not in wanted:
            wanted.append(text)
    return wanted


def install_requirements(requirements: list[str], target: Path) -> None:
    """pip install the requirements into `target` (a folder the sandbox mounts read-only
    and puts on PYTHONPATH). The host's Python must be the sandbox's, so compiled wheels fit."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != SANDBOX_PYTHON:
        raise SelfRepairError(
            f"installing {', '.join(requirements)} for the sandbox needs Python {SANDBOX_PYTHON} on the host "
            f"(this is {sys.version_info[0]}.{sys.version_info[1]})"
        )
    scratch = Path(
        tempfile.mkdtemp(
            prefix="selfrepair-env-", dir=target.parent if target.parent.is_dir() else None
        )
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(scratch),
        *requirements,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        shutil.rmtree(scratch, ignore_errors=True)
        raise SelfRepairError(
            f"pip install {' '.join(requirements)} took longer than {PIP_TIMEOUT_S} s"
        ) from None
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise SelfRepairError(
            f"cannot install {', '.join(requirements)}: {pip_reason(result.stderr, requirements[0])}"
        )
    scratch.chmod(0o755)  # mkdtemp made it the installer's alone; the sandbox's user reads it
    if target.exists():
        shutil.rmtree(target)
    scratch.rename(target)
