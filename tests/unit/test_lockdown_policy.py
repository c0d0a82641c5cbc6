"""Lock-down keys of a module (user, cap_add, resources, read_only_rootfs, secrets), the volume allow-list,
the container policy's Docker arguments, secrets read and redacted, and the metrics address."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scalebox_stream.agent.secrets import REDACTED, Redactor, SecretError, read_secrets
from scalebox_stream.executors.lockdown import (
    DEFAULT_PIDS,
    ContainerPolicy,
    VolumeRefused,
    check_volumes,
    refused_volume,
    volume_roots,
)
from scalebox_stream.spec import AppSpec, SpecError, load_app
from scalebox_stream.spec.lockdown import SecretSource

pytestmark = pytest.mark.usefixtures("no_host_env_files")


def load(tmp_path: Path, module: str) -> AppSpec:
    path = tmp_path / "app.yaml"
    path.write_text("name: a\nmodules:\n  m:\n    image: img:1\n" + module)
    return load_app(path, environ={})


def problems(tmp_path: Path, module: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(tmp_path, module)
    return [str(issue) for issue in info.value.issues]


def test_the_lock_down_keys_are_read(tmp_path: Path) -> None:
    m = load(tmp_path, "    user: 1000\n    cap_add: [net_bind_service, CAP_CHOWN]\n"
                       "    resources: {memory: 2g, cpus: 1.5, pids: 100}\n    read_only_rootfs: yes\n"
                       "    secrets: {DB_PASSWORD: {file: /run/secrets/db}, TOKEN: {env: MY_TOKEN}}\n").modules["m"]
    assert m.user == "1000:1000" and m.cap_add == ["NET_BIND_SERVICE", "CHOWN"]
    assert (m.resources.memory, m.resources.cpus, m.resources.pids) == (2 << 30, 1.5, 100)
    assert m.read_only_rootfs
    assert m.secrets == {"DB_PASSWORD": SecretSource(file="/run/secrets/db"), "TOKEN": SecretSource(env="MY_TOKEN")}


def test_defaults_leave_the_executor_defaults(tmp_path: Path) -> None:
    m = load(tmp_path, "").modules["m"]
    assert m.user is None and m.cap_add == [] and m.resources.pids is None and not m.read_only_rootfs
    assert m.secrets == {}


def test_bad_values_name_field_and_bound(tmp_path: Path) -> None:
    found = problems(tmp_path, "    user: bob\n    cap_add: [ALL]\n"
                               "    resources: {memory: 1k, cpus: 5000, pids: 2000000}\n")
    text = "\n".join(found)
    assert "modules.m.user: expected a numeric uid or uid:gid" in text
    assert "modules.m.cap_add: expected a capability name" in text
    assert "MIN_MEMORY_BYTES" in text and "MAX_CPUS" in text and "MAX_PIDS" in text


def test_a_secret_value_in_the_app_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    found = problems(tmp_path, "    secrets: {DB_PASSWORD: hunter2}\n")
    assert any("not the value itself" in p for p in found)
    assert not any("hunter2" in p for p in found)
    assert any("exactly one of file" in p for p in problems(tmp_path, "    secrets: {X: {file: /a, env: B}}\n"))
    assert any("absolute" in p for p in problems(tmp_path, "    secrets: {X: {file: rel}}\n"))


def test_a_secret_and_an_environment_variable_of_one_name_clash(tmp_path: Path) -> None:
    found = problems(tmp_path, "    environments: {X: a}\n    secrets: {X: {env: Y}}\n")
    assert any("also set in environments" in p for p in found)


@pytest.mark.parametrize(("volume", "roots", "refused"), [
    ("/:/host", ("/data",), True),
    ("/:/host", ("/",), False),
    ("/var/run/docker.sock:/s", ("/var/run",), True),  # a parent directory does not allow the socket
    ("/var/run/docker.sock:/s", ("/var/run/docker.sock",), False),
    ("/run/docker.sock:/s", ("/",), True),  # nor does / itself
    ("/data/x:/x:ro", ("/data",), False),
    ("/database:/x", ("/data",), True),  # a prefix of the name is not a parent
    ("/data/../etc:/x", ("/data",), True),
    ("named:/x", (), False),  # Docker's own named volume, not a host path
])
def test_the_allow_list(volume: str, roots: tuple[str, ...], refused: bool) -> None:
    assert (refused_volume(volume, roots) is not None) == refused


def test_a_link_counts_as_what_it_points_at(tmp_path: Path) -> None:
    (tmp_path / "root").symlink_to("/")
    why = refused_volume(f"{tmp_path}/root:/host", (str(tmp_path),))
    assert why is not None and "root file system" in why
    with pytest.raises(VolumeRefused, match="root file system"):
        check_volumes([f"{tmp_path}/ok:/a", f"{tmp_path}/root:/b"], (str(tmp_path),))


def test_the_operator_list_replaces_the_defaults() -> None:
    assert volume_roots(["/apps/x"], env={}) == ("/data", "/scratch", "/tmp", "/dev/shm", "/apps/x")
    assert volume_roots(["/apps/x"], env={"SCALEBOX_VOLUME_ALLOW": "/a: /b"}) == ("/a", "/b")


def test_the_policy_as_docker_arguments() -> None:
    assert ContainerPolicy().host_config() == {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
                                               "pids_limit": DEFAULT_PIDS}
    args = ContainerPolicy(cap_add=("CHOWN",), memory_bytes=1 << 30, cpus=1.5, read_only_rootfs=True).host_config()
    assert args["cap_add"] == ["CHOWN"] and args["mem_limit"] == args["memswap_limit"] == 1 << 30
    assert args["nano_cpus"] == 1_500_000_000 and args["read_only"] and "/tmp" in args["tmpfs"]
    assert ContainerPolicy(user="5:6").ids() == (5, 6)


def test_secrets_are_read_from_files_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("s3cret\n")
    sources = {"DB": SecretSource(file=str(tmp_path / "db")), "TOKEN": SecretSource(env="T")}
    assert read_secrets(sources, {"T": "tok"}) == {"DB": "s3cret", "TOKEN": "tok"}
    with pytest.raises(SecretError, match="TOKEN: the agent's environment has no variable T"):
        read_secrets(sources, {})
    with pytest.raises(SecretError, match="DB: cannot read"):
        read_secrets({"DB": SecretSource(file=str(tmp_path / "missing"))}, {})


def test_redaction_replaces_every_value_longest_first() -> None:
    redact = Redactor()
    assert not redact and redact.data(b"abc") == b"abc"
    redact.add(["pass", "password1", ""])
    assert redact.text("x password1 pass y") == f"x {REDACTED} {REDACTED} y"
    assert redact.data(b"password1") == REDACTED.encode()
    assert redact.text(None) is None


def test_metrics_listen_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from scalebox_stream import metrics

    seen: list[str] = []
    monkeypatch.setattr(metrics, "start_http_server", lambda port, addr: seen.append(addr))
    monkeypatch.delenv("SCALEBOX_METRICS_ADDR", raising=False)
    metrics.serve(65001)
    monkeypatch.setenv("SCALEBOX_METRICS_ADDR", "0.0.0.0")
    metrics.serve(65002)
    metrics.serve(65003, "10.0.0.1")
    assert seen == ["127.0.0.1", "0.0.0.0", "10.0.0.1"]


def test_compose_publishes_only_what_users_need_and_on_loopback() -> None:
    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yml").read_text())
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert {name for name, ports in published.items() if ports} == {"kafka", "postgres", "prometheus", "grafana"}
    assert published["projector"] == []  # its metrics are scraped inside the compose network
    for name, ports in published.items():
        for port in ports:  # HOST_ADDR:HOST_PORT:CONTAINER_PORT, the address loopback unless the operator widens it
            assert str(port).startswith("${SCALEBOX_BIND:-127.0.0.1}:"), (name, port)
            defaults = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(port))
            assert defaults.split(":")[0] == "127.0.0.1" and len(defaults.split(":")) == 3, (name, port)
