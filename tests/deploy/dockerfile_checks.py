"""Dockerfiles: where they are, their instructions, and the checks hadolint does not make.

The parser follows the Dockerfile syntax far enough for these checks: parser directives
(`# escape=`), comments, line continuations, heredocs (`RUN <<EOF ... EOF`), and ARG values
substituted into FROM (global ARGs, those before the first FROM) and into USER (the stage's
ARGs and ENVs).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# deploy/docker/<name>.Dockerfile and deploy/docker/<name>/Dockerfile, and the like.
PATTERNS = ("*.Dockerfile", "Dockerfile", "Dockerfile.*", "*/Dockerfile", "*/*.Dockerfile")
HADOLINT_CONFIGS = (".hadolint.yaml", ".hadolint.yml")
ROOT_USERS = {"root", "0"}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


def find_dockerfiles(docker_dir: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in PATTERNS:
        found.update(p for p in docker_dir.glob(pattern) if p.is_file())
    return sorted(found)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str  # the FROM image as written
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Instruction]:
    lines = text.splitlines()
    escape = "\\"
    i = 0
    while i < len(lines):  # parser directives: comments at the very top
        match = _DIRECTIVE.match(lines[i])
        if not match:
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
        i += 1
    out: list[Instruction] = []
    while i < len(lines):
        stripped = lines[i].strip()
        start = i
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith(escape) and i < len(lines):
            parts[-1] = parts[-1][: -len(escape)]
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith("#"):  # comments inside a continued instruction are dropped
                parts.append(escape)
                continue
            parts.append(nxt)
        logical = " ".join(p for p in parts if p != escape).strip()
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        for dash, _quote, word in (
            _HEREDOC.findall(args) if keyword in {"RUN", "COPY", "ADD"} else []
        ):
            while i < len(lines):
                body = lines[i].lstrip("\t") if dash else lines[i]
                i += 1
                if body == word:
                    break
        out.append(Instruction(keyword, args.strip(), start + 1))
    return out


def substitute(value: str, variables: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return _VAR.sub(one, value)


def _arg(args: str) -> tuple[str, str | None]:
    name, eq, default = args.partition("=")
    return name.strip(), (default.strip().strip("\"'") if eq else None)


def _env(args: str) -> dict[str, str]:
    """ENV's pairs: `ENV A=1 B="two words"` or the older `ENV A one value`."""
    first = args.split(None, 1)
    if not first:
        return {}
    if "=" not in first[0]:
        return {first[0]: first[1].strip() if len(first) > 1 else ""}
    try:
        words = shlex.split(args)
    except ValueError:
        return {}
    return dict(w.split("=", 1) for w in words if "=" in w)


def stages(instructions: list[Instruction]) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults, and the stages."""
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            found.append(Stage(words[0] if words else "", name, ins.line))
        elif found:
            found[-1].instructions.append(ins)
        elif ins.keyword == "ARG":
            key, default = _arg(ins.args)
            if default is not None:
                global_args[key] = default
    return global_args, found


def _final_user(stage: Stage, by_name: dict[str, Stage], global_args: dict[str, str]) -> str | None:
    """The USER a stage ends with, following the stages it is built FROM."""
    variables: dict[str, str] = {}
    user: str | None = None
    for ins in stage.instructions:
        if ins.keyword == "ARG":
            key, default = _arg(ins.args)
            value = default if default is not None else global_args.get(key)
            if value is not None:
                variables[key] = value
        elif ins.keyword == "ENV":
            variables.update(_env(ins.args))
        elif ins.keyword == "USER":
            user = substitute(ins.args.strip(), variables)
    if user is None:
        parent = by_name.get(substitute(stage.base, global_args).lower())
        if parent is not None and parent is not stage:
            return _final_user(parent, by_name, global_args)
    return user


def _pin_problem(image: str) -> str | None:
    if "$" in image:
        return f"base image {image!r} depends on an ARG without a default"
    reference, _, digest = image.partition("@")
    last = reference.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if not tag:
        return f"base image {image!r} has no tag" + (" (a digest alone)" if digest else "")
    if tag == "latest" or not re.search(r"\d", tag):
        return f"base image {image!r} is not pinned to a version (tag {tag!r})"
    return None


def structure_problems(path: Path) -> list[str]:
    """Multi-stage, ending as a non-root USER, every base image pinned to a versioned tag."""
    instructions = parse(path.read_text(encoding="utf-8"))
    global_args, found = stages(instructions)
    problems: list[str] = []
    if len(found) < 2:
        problems.append(f"{path.name}: {len(found)} FROM: not a multi-stage build")
    if not found:
        return problems
    by_name = {s.name.lower(): s for s in found if s.name}
    seen: set[str] = set()
    for stage in found:
        image = substitute(stage.base, global_args)
        if image.lower() not in seen and image.lower() != "scratch":
            problem = _pin_problem(image)
            if problem:
                problems.append(f"{path.name}:{stage.line}: {problem}")
        if stage.name:
            seen.add(stage.name.lower())
    user = _final_user(found[-1], by_name, global_args)
    if user is None:
        problems.append(f"{path.name}: the final stage sets no USER (it would run as root)")
    elif user.split(":", 1)[0].strip() in ROOT_USERS:
        problems.append(f"{path.name}: the final USER is {user!r}")
    elif "$" in user:
        problems.append(f"{path.name}: the final USER {user!r} has an unresolved variable")
    return problems


def hadolint_config(root: Path, docker_dir: Path) -> Path | None:
    for folder in (docker_dir, root):
        for name in HADOLINT_CONFIGS:
            if (folder / name).is_file():
                return folder / name
    return None


def run_hadolint(hadolint: Path, dockerfile: Path, root: Path, config: Path | None) -> str | None:
    """hadolint's findings of warning level or worse (None: clean), with a config the repository
    may have (deploy/docker/ or the root) and none from the user's home."""
    command = [str(hadolint), "--no-color", "--failure-threshold", "warning"]
    if config is not None:
        command += ["--config", str(config)]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home}
        env = {k: v for k, v in env.items() if not k.startswith("HADOLINT_")}
        done = subprocess.run(
            [*command, str(dockerfile)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if done.returncode == 0:
        return None
    return (done.stdout + done.stderr).strip() or f"hadolint exited {done.returncode}"
