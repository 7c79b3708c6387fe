"""The Dockerfiles of deploy/docker/ (`<name>.Dockerfile` or `<name>/Dockerfile`): hadolint finds
nothing of warning level or worse, and each is multi-stage, ends as a non-root USER and pins
its base images to versioned tags. Needs no Docker engine.

The second half checks the checks, on Dockerfiles written here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import dockerfile_checks as d
from tests.deploy.tools import deploy_root as _deploy_root


def dockerfiles(root: Path) -> list[Path]:
    return d.find_dockerfiles(root / "deploy" / "docker")


DOCKERFILES = [p.relative_to(_deploy_root()) for p in dockerfiles(_deploy_root())]


def test_there_are_dockerfiles(deploy_root: Path) -> None:
    assert dockerfiles(deploy_root), (
        f"no Dockerfile under {deploy_root / 'deploy' / 'docker'} "
        f"(looked for {', '.join(d.PATTERNS)})"
    )


@pytest.mark.parametrize("relative", DOCKERFILES, ids=str)
def test_hadolint_is_clean(relative: Path, deploy_root: Path, hadolint: Path) -> None:
    config = d.hadolint_config(deploy_root, deploy_root / "deploy" / "docker")
    findings = d.run_hadolint(hadolint, deploy_root / relative, deploy_root, config)
    if findings:
        pytest.fail(f"hadolint {relative}:\n{findings}", pytrace=False)


@pytest.mark.parametrize("relative", DOCKERFILES, ids=str)
def test_multi_stage_non_root_pinned(relative: Path, deploy_root: Path) -> None:
    problems = d.structure_problems(deploy_root / relative)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --- the checks ---------------------------------------------------------------------------------

GOOD = """\
# syntax=docker/dockerfile:1.7
ARG PYTHON=python:3.11.11-slim-bookworm
FROM ${PYTHON} AS build
RUN <<EOF
FROM nothing:latest
USER root
EOF
RUN pip install \\
    # a comment inside a continued line
    --prefix=/install .

FROM build AS test
FROM ${PYTHON}
ARG UID=10001
COPY --from=build /install /usr/local
USER ${UID}:${UID}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.Dockerfile"
    path.write_text(text)
    return path


def test_a_good_dockerfile_passes(tmp_path: Path) -> None:
    assert d.structure_problems(write(tmp_path, GOOD)) == []
    keywords = [i.keyword for i in d.parse(GOOD)]
    assert keywords == ["ARG", "FROM", "RUN", "RUN", "FROM", "FROM", "ARG", "COPY", "USER"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM python:3.11-slim\nUSER app\n", "not a multi-stage build"),
        ("FROM python:3.11 AS b\nFROM python:latest\nUSER app\n", "not pinned to a version"),
        ("FROM python AS b\nFROM python:3.11\nUSER app\n", "has no tag"),
        ("ARG IMG\nFROM $IMG AS b\nFROM python:3.11\nUSER app\n", "ARG without a default"),
        ("FROM python:3.11 AS b\nUSER app\nFROM python:3.11\n", "sets no USER"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nUSER app\nUSER 0:0\n", "final USER is '0:0'"),
        ("FROM python:3.11 AS b\nFROM python:3.11\nUSER $WHO\n", "unresolved variable"),
    ],
)
def test_bad_dockerfiles_are_flagged(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in " ".join(d.structure_problems(write(tmp_path, text)))


def test_user_is_inherited_from_the_parent_stage(tmp_path: Path) -> None:
    text = (
        "FROM python:3.11 AS base\nENV U=app\nUSER $U\nFROM base AS final\nRUN true\nFROM final\n"
    )
    assert d.structure_problems(write(tmp_path, text)) == []


def test_find_dockerfiles_takes_both_layouts(tmp_path: Path) -> None:
    (tmp_path / "api.Dockerfile").write_text("")
    (tmp_path / "segment").mkdir()
    (tmp_path / "segment" / "Dockerfile").write_text("")
    (tmp_path / "compose.yaml").write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in d.find_dockerfiles(tmp_path)]
    assert found == ["api.Dockerfile", "segment/Dockerfile"]


def test_hadolint_flags_a_warning(tmp_path: Path, hadolint: Path) -> None:
    path = write(tmp_path, "FROM python:3.11 AS b\nFROM python:3.11\nRUN cd /tmp\nUSER app\n")
    findings = d.run_hadolint(hadolint, path, tmp_path, None)
    assert findings is not None and "DL3003" in findings
    clean = write(tmp_path, "FROM python:3.11 AS b\nFROM python:3.11\nWORKDIR /tmp\nUSER app\n")
    assert d.run_hadolint(hadolint, clean, tmp_path, None) is None
