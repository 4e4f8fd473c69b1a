"""The built image (docker tier, run by scripts/ci-docker.sh after it builds sst:cpu): labels, no
credentials in any layer, the Colab bootstrap's docker mode against the real engine, and the
self-hosted ClearML compose file. The scanner itself and the compose file's pins are checked in
the fast tier.

    SST_IMAGE=sst:cpu pytest -m docker tests/test_image.py
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "colab"))
import bootstrap  # noqa: E402

from sst.env.locks import canonical, read_lock  # noqa: E402
from tests.conftest import docker_logs_until  # noqa: E402

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA = "/etc/ssl/certs/ca-certificates.crt"
COMPOSE = REPO / "docker" / "compose.clearml.yml"
SCAN_LIMIT = 8 << 20  # files above 8 MiB are libraries and weights, never a leaked bundle or key
PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.*?)-----END CERTIFICATE-----", re.S)


# -- helpers (fast tier tests them below) ---------------------------------------------------


def certificates(bundle: bytes) -> set[bytes]:
    """The base64 bodies of every certificate in a PEM bundle, whitespace removed."""
    return {re.sub(rb"\s+", b"", m.group(1)) for m in PEM.finditer(bundle)}


def needles(host_bundle: bytes, image_bundle: bytes, env: dict[str, str]) -> dict[str, bytes]:
    """What must never be inside the image: every host CA certificate the image's own bundle lacks
    (a proxy's CA, say; one 64-character line of each is enough to find it) and the values of
    CLEARML_* / AWS_* variables named like secrets (KEY, SECRET, TOKEN, PASS; 8+ characters)."""
    found: dict[str, bytes] = {}
    for i, body in enumerate(sorted(certificates(host_bundle) - certificates(image_bundle))):
        found[f"host CA certificate #{i}"] = body[64:128]
    for name, value in env.items():
        secret = re.search(r"KEY|SECRET|TOKEN|PASS", name)
        if name.startswith(("CLEARML_", "AWS_")) and secret and len(value) >= 8:
            found[f"${name}"] = value.encode()
    return found


def require_sentinels(wanted: dict[str, bytes]) -> None:
    """Skip unless a CLEARML_/AWS_ secret is exported to look for (scripts/ci-docker.sh exports
    sentinels before it builds): without one the scan would find nothing and prove nothing."""
    if not any(what.startswith("$") for what in wanted):
        pytest.skip(
            "no CLEARML_*/AWS_* secret exported to search the image for: build and test with "
            "scripts/ci-docker.sh, which exports sentinel secrets first"
        )


def scan_tar(stream: IO[bytes], wanted: dict[str, bytes]) -> Iterator[str]:
    """'path: what' for every regular file in a tar stream that contains one of ``wanted``."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile() or member.size > SCAN_LIMIT:
                continue
            f = tar.extractfile(member)
            data = f.read() if f else b""
            flat = re.sub(rb"\s+", b"", data) if b"BEGIN CERTIFICATE" in data else data
            for what, needle in wanted.items():
                if needle in flat:
                    yield f"{member.name}: {what}"


def make_tar(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _pem(body: bytes) -> bytes:
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


def test_scanner_finds_a_proxy_ca_and_a_secret_and_nothing_else() -> None:
    public, proxy = b"A" * 300, b"B" * 100 + b"C" * 200
    wanted = needles(
        _pem(public) + _pem(proxy),
        _pem(public),
        {
            "CLEARML_API_SECRET_KEY": "sentinel-secret-123",
            "CLEARML_OFFLINE_MODE": "1",
            "CLEARML_API_HOST": "https://api.example",
            "AWS_CA_BUNDLE": "/etc/ssl/certs/ca.crt",
            "HOME": "/root/sentinel-not-a-secret",
        },
    )
    assert sorted(wanted) == ["$CLEARML_API_SECRET_KEY", "host CA certificate #0"]
    tar = make_tar(
        {
            "etc/ssl/certs/ca-certificates.crt": _pem(public),  # the image's own bundle: fine
            "opt/venv/lib/certifi/cacert.pem": _pem(public) + _pem(proxy),  # a copied host bundle
            "home/sst/.clearml.conf": b"secret_key: sentinel-secret-123\n",
            "home/sst/notes.txt": b"nothing here",
        }
    )
    assert sorted(scan_tar(tar, wanted)) == [
        "home/sst/.clearml.conf: $CLEARML_API_SECRET_KEY",
        "opt/venv/lib/certifi/cacert.pem: host CA certificate #0",
    ]


def test_the_layer_scan_skips_without_a_secret_to_look_for() -> None:
    host_only = needles(_pem(b"B" * 300), _pem(b"A" * 300), {"CLEARML_OFFLINE_MODE": "1"})
    assert sorted(host_only) == ["host CA certificate #0"]  # something, but no secret
    with pytest.raises(pytest.skip.Exception, match="no CLEARML_\\*/AWS_\\* secret exported"):
        require_sentinels(host_only)
    require_sentinels(needles(b"", b"", {"AWS_SECRET_ACCESS_KEY": "sst-ci-sentinel-aws-secret"}))


def test_compose_stack_is_the_official_services_with_pinned_images() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    official = {
        "apiserver",
        "webserver",
        "fileserver",
        "async_delete",
        "mongo",
        "elasticsearch",
        "redis",
    }
    assert official | {"agent"} == set(services)
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[-1]
        if name == "agent":
            assert image == "${SST_IMAGE:-sst:gpu}" and svc["profiles"] == ["agent"]
            env = svc["environment"]
            assert env["CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL"] == "1"
            assert env["CLEARML_API_SECRET_KEY"] == "${CLEARML_API_SECRET_KEY:-}"
            continue
        assert ":" in image and re.fullmatch(r"\d+(\.\d+)+", tag), f"{name}: {image} not pinned"
    text = COMPOSE.read_text()
    assert "latest" not in text
    for line in text.splitlines():  # credentials only ever come from the environment
        if re.search(r"(SECRET|ACCESS)_KEY:", line):
            assert "${" in line, line


# -- the docker tier ------------------------------------------------------------------------


def _inspect(docker: str, image: str) -> dict:
    out = subprocess.run([docker, "image", "inspect", image], capture_output=True, check=True)
    return json.loads(out.stdout)[0]


@pytest.mark.docker
def test_image_labels_name_the_revision_and_the_lock(docker: str, image: str) -> None:
    labels = _inspect(docker, image)["Config"]["Labels"]
    lock = labels["io.sst.environment-lock"]
    assert lock in ("environment.lock", "environment-gpu.lock")
    assert (
        labels["io.sst.environment-lock.sha256"]
        == hashlib.sha256((REPO / lock).read_bytes()).hexdigest()
    )
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])


@pytest.mark.docker
def test_the_runtime_image_holds_the_runtime_lock_and_no_dev_tools(docker: str, image: str) -> None:
    """What runs tasks, exactly: every pin of the image's lock installed at its version, and
    nothing of environment-dev.lock (pytest, mypy, moto...): those come only in the dev image."""
    lock = _inspect(docker, image)["Config"]["Labels"]["io.sst.environment-lock"]
    listed = subprocess.run(
        [docker, "run", "--rm", "--entrypoint", "pip", image, "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    have = {canonical(p["name"]): p["version"] for p in json.loads(listed)}
    pins = read_lock(REPO / lock)
    assert {n: have.get(n) for n in pins} == pins
    dev = set(read_lock(REPO / "environment-dev.lock"))
    assert not dev & set(have), sorted(dev & set(have))
    assert "onnxruntime" in have and "pytest" not in have


@pytest.mark.docker
def test_no_credentials_in_any_layer(docker: str, image: str) -> None:
    """The host CA bundle entered the build as a secret, and CI exports sentinel CLEARML_/AWS_
    secrets before building: none may be in the history, the config or any file of the image."""
    host = HOST_CA.read_bytes() if HOST_CA.is_file() else b""
    own = subprocess.run(
        [docker, "run", "--rm", "--entrypoint", "cat", image, IMAGE_CA], capture_output=True
    ).stdout
    wanted = needles(host, own, dict(os.environ))
    require_sentinels(wanted)
    history = subprocess.run(
        [docker, "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        check=True,
    ).stdout
    config = json.dumps(_inspect(docker, image)["Config"]).encode()
    leaks = [
        f"{where}: {what}"
        for where, blob in (("history", history), ("config", config))
        for what, needle in wanted.items()
        if needle in blob
    ]
    box = subprocess.run([docker, "create", image], capture_output=True, text=True, check=True)
    cid = box.stdout.strip()
    try:
        export = subprocess.Popen([docker, "export", cid], stdout=subprocess.PIPE)
        assert export.stdout is not None
        leaks += scan_tar(export.stdout, wanted)
        assert export.wait() == 0
    finally:
        subprocess.run([docker, "rm", "-f", cid], capture_output=True)
    assert not leaks, leaks


@pytest.mark.docker
def test_colab_docker_mode_starts_the_agent_in_the_image_until_it_needs_a_server(
    docker: str, image: str, agent_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact command the bootstrap plans, on the real engine: the container starts, the agent
    inside the image reads the credentials by name and stops at the first call to the server (a
    closed port here), which is as far as a machine without a ClearML server can go."""
    server = "http://127.0.0.1:9"  # nothing listens: the server is what this machine lacks
    secret = "sst-ci-sentinel-agent-secret"
    for name in bootstrap.CREDENTIALS:
        monkeypatch.setenv(name, secret if "SECRET" in name else server)
    p = bootstrap.plan(
        "ci-image-test", "docker", image=image, agent_image=agent_image, docker=docker
    )
    assert p.mode == "docker" and secret not in p.render()
    (cmd,) = p.commands
    name = cmd[cmd.index("--name") + 1]
    subprocess.run([docker, "rm", "-f", name], capture_output=True)
    try:
        bootstrap.execute(p, bootstrap.credentials())
        logs = docker_logs_until(docker, name, r"Connection Error|misconfigured", timeout=120)
        assert "Using environment secret key CLEARML_API_SECRET_KEY=********" in logs, logs
        assert "127.0.0.1, port=9" in logs or "127.0.0.1:9" in logs, logs
        assert re.search(r"Connection Error|misconfigured", logs), logs
        assert secret not in logs
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True)


@pytest.mark.docker
def test_compose_file_validates_with_docker_compose() -> None:
    client = shutil.which("docker-compose")
    if client is None:
        pytest.fail("docker-compose not installed: scripts/docker-engine.sh installs it")
    for profile in ([], ["--profile", "agent"]):
        res = subprocess.run(
            [client, "-f", str(COMPOSE), *profile, "config", "--services"],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
    assert "agent" in res.stdout.split()
