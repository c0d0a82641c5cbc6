""".ci/bootstrap on a simulated fresh machine: a PATH without Java, Maven, Docker, Podman, Prometheus or a
virtualenv, where apt-get, pip, docker build, debootstrap and `scalebox local up` are stand-ins that print as
much as the real ones do on a first install. The terminal must get a few lines (one per step), the log they
name everything else; a failing step must show its error."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REAL_TOOLS = ("bash", "sh", "env", "cat", "mkdir", "mv", "rm", "touch", "tail", "head", "wc", "sed", "paste", "date",
              "dirname", "mktemp", "sha1sum", "sha256sum", "cut", "find", "sort", "xargs", "tar", "ln", "cp", "chmod",
              "grep", "sleep", "id", "tee", "tr", "basename", "seq", "true", "false", "readlink", "uname")
NOISE = 'for i in $(seq 1 {n}); do echo "{text} $i"; done'

# A stand-in per command: what it prints and what it does (apt-get "installs" by adding stand-ins).
FAKES = {
    "apt-get": """
for arg in "$@"; do [ "$arg" = update ] && { NOISE_UPDATE; exit 0; }; done
NOISE_APT
echo "debconf: unable to initialize frontend: Dialog" >&2
echo "needrestart is being skipped since dpkg has failed" >&2
for pkg in "$@"; do
  case "$pkg" in
    openjdk-17-jre-headless) make java ;; maven) make mvn ;; prometheus) make prometheus promtool ;;
    docker.io) make docker dockerd ;; docker-compose) make docker-compose ;; podman) make podman ;;
    debootstrap) make debootstrap ;;
  esac
done
""",
    "python3": """
if [ "$1" = -m ] && [ "$2" = venv ]; then
  mkdir -p "$3/bin"; for tool in python pip; do cp "$0" "$3/bin/$tool"; done
  cp "$FAKEBIN/.scalebox" "$3/bin/scalebox"; exit 0
fi
case "$(basename "$0") $*" in
  "pip "*|*"-m pip"*) NOISE_PIP ;;
esac
""",
    ".scalebox": """
case "$*" in
  "local up") NOISE_MVN >&2; echo "kafka bootstrap: 127.0.0.1:19092"
              echo "postgres dsn:    postgresql://x@127.0.0.1:15432/scalebox" ;;
  "local repair") echo "0 hanging transaction(s) aborted" ;;
esac
""",
    "docker": """
case "$1 $2" in
  "info "*) exit 0 ;;
  "version "*) echo 20.10.24 ;;
  "image inspect") [[ "$*" == *".Id"* ]] && { echo sha256:0123; exit 0; }; exit 1 ;;  # built images: no label
  "build "*) NOISE_BUILD
             [ "${FAKE_FAIL:-}" = build ] && { echo "error: no space left on device" >&2; exit 1; }; exit 0 ;;
  "import "*|"load "*) cat >/dev/null; echo sha256:0123 ;;
esac
exit 0
""",
    "podman": """
case "$*" in
  *"image inspect"*) exit 1 ;;
  *"version --format"*) echo 4.3.1 ;;
  *load*) cat >/dev/null ;;
esac
exit 0
""",
    "debootstrap": "NOISE_APT; mkdir -p \"$4/var/cache/apt/archives\" \"$4/var/lib/apt/lists\"",
    "busybox": 'echo /bin/sh; echo /bin/ls',
    "git": "exit 0",
    "redis-server": "echo Redis server v=7.0.15",
    "docker-compose": "echo 1.29.2",
}
INSTALLED = ("apt-get", "python3", "git", "busybox", "redis-server")
"""What a fresh Debian 12 has (busybox and redis-server: so that no script writes outside the temporary
directory); everything else is installed by the scripts."""
NOISES = {"NOISE_UPDATE": NOISE.format(n=40, text="Get: http://deb.debian.org/debian bookworm InRelease"),
          "NOISE_APT": NOISE.format(n=300, text="Selecting previously unselected package"),
          "NOISE_PIP": NOISE.format(n=120, text="Collecting some-dependency"),
          "NOISE_MVN": NOISE.format(n=200, text="[INFO] Downloading from central: https://repo.maven.apache.org"),
          "NOISE_BUILD": NOISE.format(n=80, text="Step 1/9 : RUN pip install")}


def _fresh_machine(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the set-up scripts and a PATH of basic tools and stand-ins; the environment to run them."""
    repo, fakebin, home = tmp_path / "repo", tmp_path / "bin", tmp_path / "home"
    for part in (".ci", "agents", "examples/primes", "scalebox_stream/intask"):
        shutil.copytree(REPO / part, repo / part)
    shutil.copy(REPO / "pyproject.toml", repo)
    # The real Slurm set-up writes /etc/slurm, /etc/munge and starts daemons: here a stand-in installs its packages.
    (repo / ".ci/install-slurm.sh").write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        "apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null\n")
    fakebin.mkdir()
    home.mkdir()
    for tool in REAL_TOOLS:
        if found := shutil.which(tool):
            (fakebin / tool).symlink_to(found)
    helper = (f'FAKEBIN={fakebin}\n'
              'make() { for c in "$@"; do cp "$FAKEBIN/.$c" "$FAKEBIN/$c" 2>/dev/null || '
              'cp "$FAKEBIN/.generic" "$FAKEBIN/$c"; done; }\n')
    for name, body in {**FAKES, "generic": "echo 1.0"}.items():
        for key, noise in NOISES.items():
            body = body.replace(key, noise)
        (fakebin / f".{name.lstrip('.')}").write_text(f"#!/usr/bin/env bash\n{helper}{body}\n")
        (fakebin / f".{name.lstrip('.')}").chmod(0o755)
    for present in INSTALLED:
        shutil.copy(fakebin / f".{present}", fakebin / present)
    env = {"PATH": str(fakebin), "HOME": str(home), "BUSYBOX": str(fakebin / "busybox"),
           "PODMAN_CONF": str(tmp_path / "podman.conf"), "PODMAN_PID_DIR": str(tmp_path),
           "DOCKERD": str(fakebin / "dockerd"), "DOCKERD_LOG": str(tmp_path / "dockerd.log"), "LANG": "C"}
    return repo, env


def _bootstrap(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(repo / ".ci/bootstrap")], env=env, capture_output=True, text=True,
                          timeout=120, cwd=repo)


@pytest.mark.skipif(not Path("/usr/bin/env").exists(), reason="needs /usr/bin/env for the scripts' shebangs")
def test_a_first_install_prints_a_line_per_step_and_logs_the_rest(tmp_path: Path) -> None:
    repo, env = _fresh_machine(tmp_path)
    ran = _bootstrap(repo, env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = (ran.stdout + ran.stderr).splitlines()
    log = Path(env["HOME"]) / ".scalebox/logs/setup.log"
    assert shown[0] == f"setup: details in {log}"
    assert len(shown) < 40, "\n".join(shown)
    steps = shown[1:-1]
    assert all("... done" in line for line in steps), "\n".join(shown)
    assert shown[-1] == "ready"
    text = "\n".join(shown)
    assert "installed openjdk-17-jre-headless maven" in text and "installed docker.io" in text
    assert "local Kafka and PostgreSQL... done (Kafka 127.0.0.1:19092, PostgreSQL 127.0.0.1:15432)" in text
    assert "Step 1/9" not in text  # docker build's output: kept only when a build fails (then shown)
    for noise in ("Selecting previously", "debconf", "needrestart", "Collecting", "[INFO] Downloading"):
        assert noise not in text
        assert noise in log.read_text(), f"{noise!r} should be in the log"


def test_a_failing_step_shows_its_error(tmp_path: Path) -> None:
    repo, env = _fresh_machine(tmp_path)
    ran = _bootstrap(repo, {**env, "FAKE_FAIL": "build"})
    assert ran.returncode != 0
    assert "local images... failed (exit 1)" in ran.stdout
    assert "error: no space left on device" in ran.stderr and "failed to build" in ran.stderr
    assert "ready" not in ran.stdout


def test_a_step_stops_at_the_first_failing_command_of_a_function(tmp_path: Path) -> None:
    script = f"""set -euo pipefail
. {REPO}/.ci/lib.sh
half() {{ echo first; note "did half"; false; echo never; }}
whole() {{ echo fine; note "did it"; }}
export -f half whole
step "the whole" whole
step "half of it" half || echo "status $?"
"""
    ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert ran.stdout.splitlines() == ["the whole... done (did it)", "half of it... failed (exit 1)", "status 1"]
    log = (tmp_path / ".scalebox/logs/setup.log").read_text()
    assert "fine" in log and "first" in log and "never" not in log
    assert ran.stderr.splitlines()[-1] == "first", "the failed step's output is shown"
