"""Scalebox app files load unchanged: each file under data/scalebox/ (written in the style of Scalebox's
examples and feature tests) loads, its model fields are what Scalebox means, and what this engine ignores
comes back as exact one-line warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scalebox_stream.spec import AppSpec, RetryRule, SpecError, load_app
from scalebox_stream.spec.launch import eval_slot_expr, expand_slot, parse_launch
from scalebox_stream.spec.normalize import IGNORED_KEYS, SLOT_OPTIONS
from scalebox_stream.spec.placement import SlotPlacement
from scalebox_stream.spec.templating import cascade, collect_variables

DATA = (Path(__file__).parent / "data" / "scalebox").resolve()
HOME = {"SCALEBOX_HOME": "/sbx-home"}
POLLING = "ignored: agents are fed by Kafka and send their own heartbeat"

pytestmark = pytest.mark.usefixtures("no_host_env_files")


def load(app: str, *env_files: str, file: str = "app.yaml", **environ: str) -> AppSpec:
    """Load data/scalebox/<app>/<file> as `scalebox run` would from that directory (PWD is the app dir)."""
    directory = DATA / app
    return load_app(directory / file, [directory / name for name in env_files],
                    environ={"PWD": str(directory), **HOME, **environ})


def warnings(app: AppSpec) -> list[str]:
    """The app's warnings, with the data directory cut from their file names."""
    return [str(w).replace(f"{DATA}/", "") for w in app.warnings]


def dotted(name: str, dotless: str, file: str) -> str:
    """The warning for a dotted app name on line 1 of `file`."""
    return (f"{file}:1: name: app name {name!r} is run as {dotless!r}: Kafka treats '.' and '_' in topic names "
            f"alike, so a dotted name's topics could collide with those of app {name.replace('.', '_')!r}")


def test_primes_main_router_on_the_head_and_calc_on_h0() -> None:
    app = load("primes")
    assert app.name == "primes-g10-bash" and app.main_router == "router" and app.cluster == "local"
    assert app.head_host == "h0" and app.initial_status == "RUNNING" and warnings(app) == []
    calc, router = app.modules["calc"], app.modules["router"]
    assert calc.image == "primes/calc:bash" and calc.executor == "docker" and calc.command == ["/app/bin/run.sh"]
    assert calc.placement == [SlotPlacement(host="h0", count=1)] and calc.slots == 1
    assert calc.task_dist_mode == "DEFAULT", "TASK_DIST_MODE= (blank) leaves the default"
    assert router.slot_on_head and router.placement == [SlotPlacement(host="h0", count=1)]
    assert router.code_path == DATA / "primes" / "router-code"
    assert router.environments == {"GROUPS": "10"} and app.sinks_of("calc") == ["router"]
    assert app.cluster_data_dir == Path("/sbx-home/cluster-data")


def test_primes_cascading_env_file_reads_the_general_names_first() -> None:
    app = load("primes", "inline_big_20261205.env")
    assert app.name == "primes-g80-bash", "the named file beats inline_big.env (GROUPS=40)"
    assert app.cluster == "inline"
    calc = app.modules["calc"]
    assert calc.placement == [SlotPlacement(host="n-[01][01]", count=8)], "NUM_PARALLEL from inline_big.env"
    assert calc.task_dist_mode == "HOST-BOUND", "from inline.env, the most general file"
    assert calc.slots == 8 and calc.slots_on("n-01") == 8 and calc.slots_on("n-20") == 0
    assert warnings(app) == [
        "primes/app.yaml:15: modules.calc.slots: hosts n-[01][01]: no entry names the head (h0): an agent on this "
        "machine runs 8 slots; other hosts run this module only where a cluster definition "
        "($SCALEBOX_HOME/clusters/) names them or `scalebox agent` is started"]


def test_cascade_order_and_what_must_exist(tmp_path: Path) -> None:
    assert cascade(Path("/d/p419_48nodes_1266932744.env")) == [
        Path("/d/p419.env"), Path("/d/p419_48nodes.env"), Path("/d/p419_48nodes_1266932744.env")]
    assert cascade(Path("/d/plain.env")) == [Path("/d/plain.env")]
    assert cascade(Path("/d/a_b.conf")) == [Path("/d/a_b.conf")], "only .env files cascade"
    assert cascade(Path("/d/_x.env")) == [Path("/d/_x.env")], "no empty general name"
    (tmp_path / "p419.env").write_text("A=general\nB=general\nC=general\n")
    (tmp_path / "p419_48nodes_1266932744.env").write_text("A=specific\n")
    named = tmp_path / "p419_48nodes_1266932744.env"
    got = collect_variables(tmp_path, [named], environ={})
    assert (got["A"], got["B"]) == ("specific", "general"), "p419_48nodes.env is missing: skipped"
    assert "B" not in collect_variables(tmp_path, [named], environ={}, cascade_env_files=False)
    with pytest.raises(SpecError, match="p419_9.env: env file not found"):
        collect_variables(tmp_path, [tmp_path / "p419_9.env"], environ={})


def test_hello_code_path_is_relative_to_the_app_file() -> None:
    app = load("hello")
    greeter = app.modules["greeter"]
    assert app.name == "hello-world" and greeter.code_path == DATA / "hello" / "code"
    assert warnings(app) == [dotted("hello.world", "hello-world", "hello/app.yaml")]
    assert greeter.network == "bridge" and not greeter.tmpfs_workdir
    assert greeter.standard_mounts(app.cluster_data_dir) == [
        f"{DATA / 'hello' / 'code'}:/app/bin:ro", "/:/local_data_root", "/sbx-home/cluster-data:/cluster_data_root",
        "/dev/shm:/dev/shm"]


def test_retry_rules_self_loop_and_start_task() -> None:
    app = load("retry")
    retrier = app.modules["retrier"]
    assert retrier.retry_rules == [RetryRule(exit_code=1, count=3), RetryRule(exit_code=2, count=2),
                                   RetryRule(exit_code=None, count=1)]
    assert retrier.sink_modules == ["retrier"] and retrier.start_task == ["0"] and retrier.slot_on_head
    assert retrier.code_path == DATA / "retry" / "code"
    assert warnings(app) == [dotted("retry.feature-test", "retry-feature-test", "retry/app.yaml")]


def test_timeout_file_with_a_tab_after_the_key() -> None:
    assert "task_max_seconds:\t6" in (DATA / "timeout" / "app.yaml").read_text()
    app = load("timeout")
    sleeper = app.modules["sleeper"]
    assert sleeper.task_max_seconds == 6 and sleeper.image == "sleeper-image" and sleeper.code_path is None
    assert sleeper.environments == {"TICKS": "12"} and sleeper.start_task == ["0"]
    assert warnings(app) == [dotted("timeout.feature-test", "timeout-feature-test", "timeout/app.yaml")]


def test_check_blank_values_leave_knobs_unset() -> None:
    gate = load("check").modules["gate"]
    assert gate.slot_on_head, "slot_on_head: yes in parameters"
    assert gate.dir_quota_gb == {} and gate.free_space_gb == {}
    assert gate.environments == {"ACTION_CHECK": ""} and gate.actions == {}


def test_check_with_an_env_file_sets_quota_free_space_and_action_check() -> None:
    app = load("check", "quota.env")
    gate = app.modules["gate"]
    assert gate.dir_quota_gb == {"/data/ssd/tmp": 18} and gate.free_space_gb == {"/data/ssd": 1500}
    assert gate.actions == {"check": "/app/bin/random-check.sh"}
    assert gate.command == ["/app/bin/run.sh"] and app.initial_status == "RUNNING"


def test_sidecar_default_and_custom_scripts() -> None:
    default = load("sidecar")
    assert default.modules["sidecar"].actions == {} and default.modules["sidecar"].command == ["/app/bin/run.sh"]
    assert warnings(default) == [
        dotted("sidecar.feature-test", "sidecar-feature-test", "sidecar/app.yaml")]
    assert default.modules["sidecar"].max_idle_polls == 30, "the agent stops after 30 idle polls"
    custom = load("sidecar", ACTION_RUN="/app/bin/run-custom.sh", ACTION_SETUP="/app/bin/setup-custom.sh",
                  ACTION_TEARDOWN="/app/bin/teardown-custom.sh", ACTION_CHECK="/app/bin/check-custom.sh")
    module = custom.modules["sidecar"]
    assert module.actions == {"run": "/app/bin/run-custom.sh", "setup": "/app/bin/setup-custom.sh",
                              "teardown": "/app/bin/teardown-custom.sh", "check": "/app/bin/check-custom.sh"}
    assert module.command == ["/app/bin/run-custom.sh"], "ACTION_RUN replaces run.sh"


def test_wait_queue_with_old_keys_and_a_code_path_above_the_app() -> None:
    app = load("waitqueue/test")
    queue, after = app.modules["queue"], app.modules["after-queue"]
    assert list(app.modules) == ["queue", "after-queue"], "jobs: is modules:"
    assert queue.sink_modules == ["after-queue"] and queue.code_path == DATA / "waitqueue" / "code"
    assert queue.environments == {"SEMA_NAME": "gate_sema"} and queue.slot_on_head
    assert after.placement == [] and after.slots == 1 and after.command == ["/app/bin/run.sh"]
    assert warnings(app) == [dotted("wait-queue.feature-test", "wait-queue-feature-test", "waitqueue/test/app.yaml")]


def test_gpu_launch_template_and_slot_expressions() -> None:
    app = load("gpu")
    module = app.modules["beamform"]
    launch = module.launch
    assert launch is not None and launch.engine == "docker" and module.executor == "docker"
    assert module.network == "host" and module.tmpfs_workdir, "--network=host and --tmpfs=/work are honoured"
    assert module.command == ["/app/bin/run.sh"], "the template starts the container; run.sh runs inside"
    assert launch.options == ["--device=/dev/dri/renderD{~n%2+128~}"] and launch.env == {
        "ROCR_VISIBLE_DEVICES": "{~n~}"}
    assert launch.slot_expressions == ["n%2+128", "n"]
    assert module.max_idle_polls == 20 and module.poll_interval_seconds == 6
    assert module.placement == [SlotPlacement(host="h0", count=2), SlotPlacement(host="gpu-node-[0-9]+", count=4)]
    assert module.slots == 2 and module.slots_on("gpu-node-12") == 4
    assert launch.render(3, envs={"A": "1"}, volumes=["/x:/y"], image="beamform:rocm") == [
        "docker", "run", "-d", "--rm", "--network=host", "--tmpfs=/work", "--device=/dev/dri/renderD129",
        "-e", "ROCR_VISIBLE_DEVICES=3", "-e", "A=1", "-v", "/x:/y", "beamform:rocm"]
    assert warnings(app) == [
        dotted("gpu.feature-test", "gpu-feature-test", "gpu/app.yaml"),
        "gpu/app.yaml:6: modules.beamform.command: launch template read (docker, network host); not applied yet: "
        "--device=/dev/dri/renderD{~n%2+128~} -e ROCR_VISIBLE_DEVICES={~n~}",
        "gpu/app.yaml:10: modules.beamform.slots: hosts gpu-node-[0-9]+: the head (h0) runs 2 slots; other hosts run "
        "this module only where a cluster definition ($SCALEBOX_HOME/clusters/) names them or `scalebox agent` is "
        "started"]


def test_cluster_definition_names_the_head_and_the_data_dir() -> None:
    app = load("cluster", DATA_ROOT="/srv")
    copier = app.modules["copier"]
    assert app.head_host == "head-1" and app.cluster_data_dir == Path("/srv/mydata")
    assert copier.volumes == ["/srv/mydata/incoming:/incoming"], "${CLUSTER_DATA_DIR} is the base_data_dir"
    assert copier.slots == 2 and copier.slots_on("c-02") == 1 and copier.slots_on("h0") == 0
    assert copier.tmpfs_workdir and not copier.local_data_mapping and copier.cluster_data_mapping
    assert copier.code_path == DATA / "cluster" / "code" and app.initial_status == "PAUSED"
    assert copier.standard_mounts(app.cluster_data_dir) == [
        f"{DATA / 'cluster' / 'code'}:/app/bin:ro", "/srv/mydata:/cluster_data_root", "/dev/shm:/dev/shm"]
    assert warnings(app) == [
        "cluster/app.yaml:4: parameters.initial_status: initial_status PAUSED is kept in the model; `scalebox run` "
        "starts the app at once (a paused start is not yet)",
        "cluster/app.yaml:12: modules.copier.arguments.slot_options: slot option 'reserved_on_exit' ignored: keeping "
        "a slot's container after it exits is not yet supported by scalebox-stream"]
    assert app.clusters["mycluster"]["hosts"]["c-00"] == {"ip_addr": "10.0.0.2"}, "the file's hosts are kept"


def test_cluster_data_dir_from_the_environment_wins() -> None:
    app = load("cluster", DATA_ROOT="/srv", CLUSTER_DATA_DIR="/mnt/shared")
    assert app.cluster_data_dir == Path("/mnt/shared")
    assert app.modules["copier"].volumes == ["/mnt/shared/incoming:/incoming"]


# --- every ignored knob: accepted, one warning each, naming what and why ----------------------------------


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "app.yaml").write_text(text)
    return tmp_path / "app.yaml"


def load_text(tmp_path: Path, text: str, **options: Any) -> AppSpec:
    return load_app(write(tmp_path, text), environ=HOME, **options)


def test_every_ignored_scalebox_key_warns_once_with_its_reason(tmp_path: Path) -> None:
    app_keys = ["is_cluster_admin", "slot_group", "datasets"]
    module_keys = [key for key in IGNORED_KEYS if key not in app_keys]
    text = ("name: a\nparameters:\n" + "".join(f"  {key}: 1\n" for key in app_keys)
            + "modules:\n  m:\n    image: x\n    parameters:\n" + "".join(f"      {key}: 1\n" for key in module_keys))
    app = load_text(tmp_path, text)
    got = [(w.line, w.field, w.message) for w in app.warnings]
    expected = [(3 + i, f"parameters.{key}", f"ignored: {IGNORED_KEYS[key]}") for i, key in enumerate(app_keys)]
    first = 3 + len(app_keys) + 4
    expected += [(first + i, f"modules.m.parameters.{key}", f"ignored: {IGNORED_KEYS[key]}")
                 for i, key in enumerate(module_keys)]
    assert got == expected


def test_old_names_of_ignored_keys_warn_under_the_name_written(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nparameters: {default_sleep_count: 20}\nmodules:\n  m:\n    image: x\n"
                              "    arguments: {max_sleep_count: 5, sleep_interval_seconds: 2, heartbeat_seconds: 0}\n")
    assert [(w.line, w.field) for w in app.warnings] == [(6, "modules.m.arguments.heartbeat_seconds")]
    assert {w.message for w in app.warnings} == {POLLING}
    module = app.modules["m"]
    assert (app.default_idle_polls, module.max_idle_polls, module.poll_interval_seconds) == (20, 5, 2), \
        "the idle limit's old names are read"


def test_blank_ignored_knobs_say_nothing(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    arguments:\n      task_batch_size: ''\n"
                              "      max_idle_polls:\n      slot_options: ''\n")
    assert app.warnings == ()


def test_every_slot_option(tmp_path: Path) -> None:
    options = ",".join(SLOT_OPTIONS)
    app = load_text(tmp_path, f"name: a\nmodules:\n  m:\n    image: x\n    arguments:\n      slot_options: {options}\n")
    module = app.modules["m"]
    assert module.slot_on_head and module.tmpfs_workdir
    assert not module.local_data_mapping and not module.cluster_data_mapping
    assert [w.message for w in app.warnings] == [f"slot option {name!r} ignored: {why}"
                                                  for name, why in SLOT_OPTIONS.items() if isinstance(why, str)]
    assert {(w.line, w.field) for w in app.warnings} == {(6, "modules.m.arguments.slot_options")}


def test_slot_options_as_a_list_and_schedule_mode_head(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    slot_options: [tmpfs_workdir]\n"
                              "  n:\n    image: x\n    schedule_mode: HEAD\n    slots: 3\n"
                              "  o:\n    image: x\n    schedule_mode: NODE\n")
    assert app.modules["m"].tmpfs_workdir and not app.modules["m"].slot_on_head
    assert app.modules["n"].slot_on_head and app.modules["n"].placement == [SlotPlacement(host="h0", count=3)]
    assert [(w.line, w.field) for w in app.warnings] == [(12, "modules.o.schedule_mode")]


def test_host_list_forms(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    slots: 'h0:2, h0:'\n"
                              "  n:\n    image: x\n    slots:\n      - {host: h0, count: 3}\n      - node-1::grp\n"
                              "  o:\n    image: x\n    hosts: [h0]\n")
    assert app.modules["m"].placement == [SlotPlacement(host="h0", count=2), SlotPlacement(host="h0", count=1)]
    assert app.modules["m"].slots == 3, "both entries are on the head"
    assert app.modules["n"].placement[1] == SlotPlacement(host="node-1", count=1, group_prefix="grp")
    assert app.modules["n"].slots == 3 and app.modules["o"].slots == 1


def test_the_plain_integer_slots_keep_their_meaning(tmp_path: Path) -> None:
    module = load_text(tmp_path, "name: a\nmodules:\n  m: {image: x, slots: 4}\n").modules["m"]
    assert module.slots == 4 and module.placement == [] and module.slots_on("any-host") == 4


def test_network_and_flags(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  m: {image: x, network: NONE, tmpfs_workdir: yes}\n"
                              "  n: {image: x, command: 'docker run --net bridge {{IMAGE}}', network: none}\n")
    assert app.modules["m"].network == "none" and app.modules["m"].tmpfs_workdir
    assert app.modules["n"].network == "none", "the module's network beats the template's"


def test_version_and_main_router_aliases(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nversion: 1.0\nparameters: {default_message_router: r}\n"
                              "modules:\n  r: {image: x, envs: [A=1]}\n")
    assert app.version == "1.0" and app.main_router == "r" and app.modules["r"].environments == {"A": "1"}


# --- executors and SLOT-BOUND: refused at validation, clearly --------------------------------------------


def test_executors_this_machine_lacks_are_refused_at_their_key(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_text(tmp_path, "name: a\nmodules:\n  p:\n    image: x\n    executor: apptainer\n"
                            "  s:\n    base_image: /images/agent.sif\n"
                            "  t:\n    image: x\n    command: singularity run {{ENVS}} docker://{{IMAGE}}\n")
    assert [str(i).replace(f"{tmp_path}/", "") for i in info.value.issues] == [
        "app.yaml:5: modules.p.executor: apptainer is not available on this machine: scalebox-stream has no "
        "apptainer executor here (executors: process, docker, podman)",
        "app.yaml:7: modules.s.base_image: apptainer is not available on this machine (chosen by the .sif image): "
        "scalebox-stream has no apptainer executor here (executors: process, docker, podman)",
        "app.yaml:10: modules.t.command: apptainer is not available on this machine (chosen by the launch template): "
        "scalebox-stream has no apptainer executor here (executors: process, docker, podman)"]


def test_executors_can_be_checked_for_another_machine(tmp_path: Path) -> None:
    app = load_text(tmp_path, "name: a\nmodules:\n  t:\n    image: x\n    command: singularity run {{ENVS}} "
                              "docker://{{IMAGE}}\n", executors=("apptainer",))
    assert app.modules["t"].executor == "apptainer" and app.modules["t"].launch is not None


def test_slot_bound_is_refused_saying_why(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_text(tmp_path, "name: a\nmodules:\n  m:\n    image: x\n    parameters:\n"
                            "      task_dist_mode: slot-bound\n")
    assert str(info.value).endswith(
        "app.yaml:6: modules.m.parameters.task_dist_mode: SLOT-BOUND (a to_slot header picks the slot) is not "
        "supported: agents here take tasks per host, not per slot; use HOST-BOUND with a to_host header, or DEFAULT")


# --- slot expressions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "n", "value"), [
    ("n", 0, 0), ("n", 5, 5), ("n%2", 3, 1), ("n%2+128", 3, 129), ("(n+1)*2", 2, 6), ("n/2", 5, 2), ("-n+10", 4, 6),
])
def test_slot_expression_values(expression: str, n: int, value: int) -> None:
    assert eval_slot_expr(expression, n) == value


def test_at_expressions_expand_per_slot() -> None:
    assert expand_slot("SEQ=((@seq)) P=((@p:my_param)) V=((@v:my_var)) D={~n*2~}", 3) == "SEQ=3 P= V= D=6"
    launch = parse_launch("docker run -e SEQ=((@seq)) {{ENVS}} {{VOLUMES}} {{IMAGE}} --verbose")
    assert launch.slot_expressions == ["((@seq))"] and launch.args == ["--verbose"]
    assert launch.render(1, envs={}, volumes=[], image="i") == ["docker", "run", "-e", "SEQ=1", "i", "--verbose"]
