"""A Docker Engine for the image tests, and the base images the Dockerfile names.

Where an engine already answers (Docker on a developer's machine, `DOCKER_HOST`), it is used
as it is. Otherwise, as root on Debian, the tests install Debian's `docker.io` and start
`dockerd` on a socket of their own, with host networking only (no bridge, no iptables); its data
is kept in STATE between runs, so what it built once is there the next time. Where a base image
cannot be pulled (no registry reachable), a stand-in is built: the Python image from Debian's
own packages (`debootstrap`: `DEBIAN_PYTHON`), given this machine's CA bundle so
that uv can reach the package index through any TLS inspection; the uv image as the `uv` binary
from uv's wheel on PyPI. The Dockerfile the user gets is built as it is.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

STATE = Path(tempfile.gettempdir()) / "template-docker"
# The Debian release whose python3 stands in for a `python:<version>-slim-*` image: trixie has
# 3.13, and bookworm's 3.11 stands in for 3.11 on trixie. No Debian release has 3.12.
DEBIAN_PYTHON = {"3.13": "trixie", "3.11": "bookworm"}
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Engine:
    """A Docker Engine the tests can reach: `docker` with the environment that finds it."""

    env: dict[str, str]

    def docker(
        self, *args: str, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0


def unavailable(reason: str) -> NoReturn:
    """Skip, saying how to enable the test; under CI (`CI=true`) fail instead."""
    message = (
        f"no Docker Engine: {reason}. Start Docker, or run the tests as root on Debian, where "
        "they install docker.io and start it themselves"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def answers(env: dict[str, str]) -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], env=env, capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


def start_engine() -> tuple[Engine, subprocess.Popen[bytes] | None]:
    """An engine that answers, and the `dockerd` process if the tests started it."""
    if answers(dict(os.environ)):
        return Engine(dict(os.environ)), None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable("none answers, and only root on Debian can start one here")
    if shutil.which("dockerd") is None or shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=900, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io", "debootstrap"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            timeout=900,
            check=True,
        )
    env = {**os.environ, "DOCKER_HOST": f"unix://{STATE / 'docker.sock'}"}
    # overlay2 where the kernel allows it; vfs (a full copy per layer, slower) elsewhere.
    for driver in ["overlay2", "vfs"]:
        STATE.mkdir(exist_ok=True)
        with (STATE / "dockerd.log").open("ab") as log:
            daemon = subprocess.Popen(
                [
                    "dockerd",
                    f"--storage-driver={driver}",
                    "--iptables=false",
                    "--bridge=none",
                    f"--data-root={STATE / driver}",
                    f"--exec-root={STATE / 'exec'}",
                    f"--pidfile={STATE / 'dockerd.pid'}",
                    f"--host={env['DOCKER_HOST']}",
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while daemon.poll() is None and time.monotonic() < deadline and not answers(env):
            time.sleep(0.2)
        if daemon.poll() is None and answers(env):
            return Engine(env), daemon
        daemon.terminate()
        daemon.wait(timeout=60)
    unavailable(f"dockerd did not start: {(STATE / 'dockerd.log').read_text()[-2000:]}")


def stop_engine(daemon: subprocess.Popen[bytes] | None) -> None:
    if daemon is not None:
        daemon.terminate()
        daemon.wait(timeout=60)


def debian_mirror() -> str:
    """The Debian mirror apt already uses here."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        text = path.read_text() if path.is_file() else ""
        found = re.search(r"^(?:URIs:|deb)\s+(https?://\S+/debian)\s*$", text, re.MULTILINE)
        if found:
            return found.group(1)
    return "http://deb.debian.org/debian"


def python_stand_in(engine: Engine, name: str) -> None:
    """`python:<version>-slim-...` from Debian's packages: python3, ca-certificates, a shell."""
    version = re.fullmatch(r"python:(\d+\.\d+)-slim-\w+", name)
    if version is None or version.group(1) not in DEBIAN_PYTHON:
        unavailable(f"{name} cannot be pulled, and no stand-in is known for it")
    with tempfile.TemporaryDirectory(dir=STATE) as scratch:
        root = Path(scratch) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,ca-certificates",
                DEBIAN_PYTHON[version.group(1)],
                str(root),
                debian_mirror(),
            ],
            capture_output=True,
            timeout=1200,
            check=True,
        )
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
        # This machine's CA bundle, which trusts any TLS inspection between it and the index.
        shutil.copyfile(CA_BUNDLE, root / "etc" / "ssl" / "certs" / "ca-certificates.crt")
        archive = Path(scratch) / "root.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        engine.docker(
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            f"ENV SSL_CERT_FILE={CA_BUNDLE}",
            "--change",
            'CMD ["python3"]',
            str(archive),
            name,
        )


def uv_stand_in(engine: Engine, name: str) -> None:
    """`ghcr.io/astral-sh/uv:<version>`: that version's `uv` binary, from its wheel on PyPI."""
    version = name.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory(dir=STATE) as scratch:
        wheels = Path(scratch)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--platform=manylinux_2_17_x86_64",
                f"--dest={wheels}",
                f"uv=={version}",
            ],
            capture_output=True,
            timeout=600,
            check=True,
        )
        (wheel,) = wheels.glob("uv-*.whl")
        context = wheels / "context"
        context.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            (member,) = [entry for entry in archive.namelist() if entry.endswith(".data/scripts/uv")]
            (context / "uv").write_bytes(archive.read(member))
        (context / "uv").chmod(0o755)
        (context / "Dockerfile").write_text("FROM scratch\nCOPY uv /uv\n")
        engine.docker("build", "--quiet", "--tag", name, str(context))


def ensure_base(engine: Engine, name: str) -> None:
    """Have the image `name`: already there, pulled, or a stand-in built here."""
    if engine.has_image(name):
        return
    if engine.docker("pull", name, timeout=300, check=False).returncode == 0:
        return
    if name.startswith("ghcr.io/astral-sh/uv:"):
        uv_stand_in(engine, name)
    else:
        python_stand_in(engine, name)
