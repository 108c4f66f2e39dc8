"""The daemon's run monitoring, asking our launcher, fails a started run whose worker process is gone and
leaves alone runs whose process lives or cannot be judged from this host."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from mfg_assets.instance import DAGSTER_YAML, LEGACY_PROCESS_TAG, PROCESS_TAG, fail_abandoned_runs, get_instance
from mfg_assets.run_launcher import LAUNCH_TAG, LocalRunLauncher, _server_is_local
from resources.storage.scratch import process_tag


@dg.op
def _noop() -> None:
    return None


@dg.job
def _one_op_job() -> None:
    _noop()


def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str], worker_pid: int | None) -> dg.DagsterRun:
    run = instance.create_run_for_job(_one_op_job, status=dg.DagsterRunStatus.STARTED, tags=tags)
    if worker_pid is not None:  # what Dagster's run worker reports as it starts (dagster/_grpc/impl.py)
        instance.report_engine_event(f"Started process for run (pid: {worker_pid}).", run, EngineEventData.in_process(worker_pid))
    return run


def _monitor(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    """One pass of Dagster's own monitoring over ``run``, as the daemon does every poll."""
    record = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))[0]
    monitor_started_run(instance, None, record, logging.getLogger("test"))  # type: ignore[arg-type]
    return instance.get_run_by_id(run.run_id)


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return records[-1].event_log_entry.message


def test_the_instance_mfgv_writes_monitors_runs_with_this_launcher(mfg_home: Path) -> None:
    instance = get_instance(mfg_home)
    assert isinstance(instance.run_launcher, LocalRunLauncher)
    assert instance.run_launcher.supports_check_run_worker_health
    assert instance.run_monitoring_enabled and instance.run_monitoring_settings["poll_interval_seconds"] == 30
    assert not instance.nux_enabled  # the UI opens without Dagster's community sign-up dialog


def test_a_config_an_older_mfgv_wrote_is_upgraded_and_a_persons_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mfg_assets.instance import prepare_home

    monkeypatch.setenv("MFG_HOME", str(tmp_path / "old"))
    old = tmp_path / "old" / "dagster" / "dagster.yaml"
    old.parent.mkdir(parents=True)
    old.write_text("# Written by mfgv: the platform never phones home.\ntelemetry:\n  enabled: false\n")
    prepare_home(tmp_path / "old")
    assert old.read_text() == DAGSTER_YAML
    old.write_text("# Written by mfgv (dagster.yaml v2): ...\ntelemetry:\n  enabled: false\n")  # before the dialog was off
    prepare_home(tmp_path / "old")
    assert old.read_text() == DAGSTER_YAML and "nux:\n  enabled: false" in DAGSTER_YAML
    mine = tmp_path / "mine" / "dagster" / "dagster.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("telemetry:\n  enabled: false\n")
    prepare_home(tmp_path / "mine")
    assert mine.read_text() == "telemetry:\n  enabled: false\n"


def test_a_run_whose_worker_died_is_failed_with_the_reason(mfg_home: Path) -> None:
    instance = get_instance(mfg_home)
    local = {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266})}
    dead = _started_run(instance, local, _dead_pid())
    assert _monitor(instance, dead).status == dg.DagsterRunStatus.FAILURE
    message = _failure_message(instance, dead.run_id)
    assert "ended without finishing the run" in message and "launch the run again" in message
    assert message.count("ended without finishing the run") == 1  # not repeated as the worker's debug info


def test_runs_whose_process_lives_or_cannot_be_judged_here_keep_running(mfg_home: Path) -> None:
    instance = get_instance(mfg_home)
    local = {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266})}
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            runs = [
                _started_run(instance, local, alive.pid),  # the worker lives
                _started_run(instance, {GRPC_INFO_TAG: json.dumps({"host": "10.20.30.40", "port": 4266})}, _dead_pid()),
                _started_run(instance, local, None),  # no worker reported yet
                _started_run(instance, {}, _dead_pid()),  # launched by something that says nothing of where
            ]
            for run in runs:
                assert _monitor(instance, run).status == dg.DagsterRunStatus.STARTED, run.tags
        finally:
            alive.kill()


def test_a_run_of_an_mfgv_process_that_died_is_failed_by_the_daemon_and_by_mfgv(mfg_home: Path) -> None:
    instance = get_instance(mfg_home)
    gone = f"{_dead_pid()}.{process_tag().split('.')[1]}"
    by_daemon = _started_run(instance, {PROCESS_TAG: gone}, None)
    assert _monitor(instance, by_daemon).status == dg.DagsterRunStatus.FAILURE
    assert "the mfgv process that executed this run" in _failure_message(instance, by_daemon.run_id)
    by_mfgv = _started_run(instance, {PROCESS_TAG: gone}, None)
    by_older_mfgv = _started_run(instance, {LEGACY_PROCESS_TAG: gone}, None)  # its tag was visible then
    mine = _started_run(instance, {PROCESS_TAG: process_tag()}, None)
    worker_gone = _started_run(instance, {GRPC_INFO_TAG: json.dumps({"socket": "/tmp/x.sock"})}, _dead_pid())
    assert sorted(fail_abandoned_runs(instance)) == sorted([by_mfgv.run_id, by_older_mfgv.run_id, worker_gone.run_id])
    assert instance.get_run_by_id(mine.run_id).status == dg.DagsterRunStatus.STARTED


def test_where_a_code_server_runs_is_read_from_dagsters_tag() -> None:
    assert _server_is_local(json.dumps({"host": "localhost", "socket": "/tmp/s"}))
    assert _server_is_local(json.dumps({"host": "127.0.0.1", "port": 4000}))
    assert not _server_is_local(json.dumps({"host": "code-server.plant.local", "port": 4000}))
    assert not _server_is_local(None) and not _server_is_local("not json")


def test_a_run_whose_worker_started_before_the_last_boot_is_failed_even_if_its_pid_was_reused(
    mfg_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import mfg_assets.run_launcher as launcher

    assert launcher.boot_time() is None or launcher.boot_time() < time.time()  # read from this host's /proc/stat
    instance = get_instance(mfg_home)
    local = {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266})}
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as reused:  # the pid lives again
        try:
            run = _started_run(instance, local, reused.pid)
            monkeypatch.setattr(launcher, "boot_time", lambda: time.time() + 1.0)  # the host restarted since
            assert _monitor(instance, run).status == dg.DagsterRunStatus.FAILURE
            assert "lost when this machine restarted" in _failure_message(instance, run.run_id)
        finally:
            reused.kill()


def _launched_here(clock_step_s: float = 0.0, **changes: str) -> dict[str, str]:
    """The tags a run launched through a local code server carries (LocalRunLauncher.launch_run's record,
    with ``changes``; a wall clock stepped since by ``clock_step_s`` reads its boot time that much later)."""
    from resources.storage.processes import launch_record

    record = {**launch_record(), **changes}
    record["clock_at_boot"] -= clock_step_s
    return {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266}), LAUNCH_TAG: json.dumps(record)}


def _reported_long_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's start event reads as written minutes ago, though after this machine booted (the pid it
    names is then held by a process that started after it: a reused pid)."""
    import time

    import mfg_assets.run_launcher as launcher

    uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
    real = launcher._worker_start
    monkeypatch.setattr(
        launcher, "_worker_start", lambda instance, run_id: (real(instance, run_id)[0], time.time() - min(600.0, uptime / 2))
    )


def test_a_run_whose_worker_pid_now_belongs_to_a_younger_process_is_failed(
    mfg_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = get_instance(mfg_home)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as holder:
        try:
            reused = _started_run(instance, _launched_here(), holder.pid)
            stepped = _started_run(instance, _launched_here(clock_step_s=100.0), holder.pid)
            untagged = _started_run(instance, {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266})}, holder.pid)
            assert _monitor(instance, reused).status == dg.DagsterRunStatus.STARTED  # the worker started before its event
            _reported_long_ago(monkeypatch)
            assert _monitor(instance, reused).status == dg.DagsterRunStatus.FAILURE
            assert f"the run worker process ({holder.pid}) ended without finishing" in _failure_message(instance, reused.run_id)
            # the wall clock moved since the launch, or the run predates the launch tag: nothing to compare
            assert _monitor(instance, stepped).status == dg.DagsterRunStatus.STARTED
            assert _monitor(instance, untagged).status == dg.DagsterRunStatus.STARTED
        finally:
            holder.kill()


def test_a_run_launched_in_an_earlier_boot_of_this_machine_is_failed_whatever_the_clock_says(mfg_home: Path) -> None:
    instance = get_instance(mfg_home)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as holder:
        try:  # the pid lives again, in this boot
            earlier_boot = _started_run(instance, _launched_here(boot_id="an-earlier-boot"), holder.pid)
            other_machine = _started_run(instance, _launched_here(boot_id="an-earlier-boot", machine="0badf00d"), holder.pid)
            assert _monitor(instance, earlier_boot).status == dg.DagsterRunStatus.FAILURE
            assert "lost when this machine restarted" in _failure_message(instance, earlier_boot.run_id)
            assert _monitor(instance, other_machine).status == dg.DagsterRunStatus.STARTED  # cannot be judged here
        finally:
            holder.kill()


def test_an_mfgv_run_of_an_earlier_boot_is_failed_though_its_tag_names_another_host_hash(mfg_home: Path) -> None:
    """After a power cut the process tag's host hash (which includes the boot) never matches again; the
    launch record says the run was this machine's, in an earlier boot."""
    from resources.storage.processes import launch_record

    instance = get_instance(mfg_home)
    earlier = json.dumps({**launch_record(), "boot_id": "an-earlier-boot"})
    lost = _started_run(instance, {PROCESS_TAG: "4242-99.0badf00d", LAUNCH_TAG: earlier}, None)
    elsewhere = _started_run(
        instance, {PROCESS_TAG: "4242-99.0badf00d", LAUNCH_TAG: json.dumps({**json.loads(earlier), "machine": "0badf00d"})}, None
    )
    assert fail_abandoned_runs(instance) == [lost.run_id]
    assert "(4242) was lost when this machine restarted" in _failure_message(instance, lost.run_id)
    assert instance.get_run_by_id(elsewhere.run_id).status == dg.DagsterRunStatus.STARTED


def test_the_launcher_records_machine_boot_and_clock_before_the_worker_starts(
    mfg_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.launcher import DefaultRunLauncher, LaunchRunContext

    from resources.storage.processes import boot_id, machine_tag, wall_clock_at_boot

    instance = get_instance(mfg_home)
    run = instance.create_run_for_job(_one_op_job, status=dg.DagsterRunStatus.STARTING, tags={LAUNCH_TAG: "copied from a parent"})
    seen: list[str] = []
    monkeypatch.setattr(
        DefaultRunLauncher, "launch_run", lambda self, context: seen.append(instance.get_run_by_id(run.run_id).tags[LAUNCH_TAG])
    )
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    assert len(seen) == 1  # Dagster's own launch ran, after the tag was written
    record = json.loads(seen[0])
    assert (record["machine"], record["boot_id"]) == (machine_tag(), boot_id())
    assert abs(record["clock_at_boot"] - wall_clock_at_boot()) < 1.0


def test_a_run_of_an_mfgv_process_whose_pid_now_belongs_to_another_process_is_failed(mfg_home: Path) -> None:
    from resources.storage.processes import process_identity

    instance = get_instance(mfg_home)
    host = process_tag().split(".")[1]
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as holder:
        try:
            ticks = int(process_identity(holder.pid).split("-")[1])
            its_own = _started_run(instance, {PROCESS_TAG: f"{holder.pid}-{ticks}.{host}"}, None)
            reused = _started_run(instance, {PROCESS_TAG: f"{holder.pid}-{ticks - 1}.{host}"}, None)
            assert fail_abandoned_runs(instance) == [reused.run_id]
            assert "the mfgv process that executed this run (%d) ended" % holder.pid in _failure_message(instance, reused.run_id)
            assert instance.get_run_by_id(its_own.run_id).status == dg.DagsterRunStatus.STARTED
        finally:
            holder.kill()


def test_a_ui_re_execution_of_an_mfgv_run_is_judged_by_its_worker_not_the_tag_it_inherited(mfg_home: Path) -> None:
    """Dagster copies a parent run's tags to its re-execution; the mfgv process that ran the parent is long gone."""
    instance = get_instance(mfg_home)
    gone = f"{_dead_pid()}.{process_tag().split('.')[1]}"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as worker:
        try:
            run = _started_run(instance, {PROCESS_TAG: gone, **_launched_here()}, worker.pid)
            assert _monitor(instance, run).status == dg.DagsterRunStatus.STARTED
            assert fail_abandoned_runs(instance) == []
        finally:
            worker.kill()


def test_a_run_whose_worker_died_before_the_run_began_times_out_with_the_reason(
    mfg_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster fails a run stuck in STARTING after its start timeout and asks the launcher only for debug
    information: ours says the worker is gone, where Dagster's own message would say only 'timed out'."""
    import time

    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._daemon.monitoring import run_monitoring

    instance = get_instance(mfg_home)
    local = {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266})}
    run = instance.create_run_for_job(_one_op_job, status=dg.DagsterRunStatus.NOT_STARTED, tags=local)
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_STARTING.value, job_name=run.job_name), run_id=run.run_id
    )
    instance.report_engine_event(f"Started process for run (pid: {_dead_pid()}).", run, EngineEventData.in_process(0))
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTING
    later = time.time() + instance.run_monitoring_start_timeout_seconds + 1
    monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: later)
    record = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))[0]
    run_monitoring.monitor_starting_run(instance, record, logging.getLogger("test"))
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    message = _failure_message(instance, run.run_id)
    assert "seconds to start" in message and "ended without finishing the run" in message


def test_runs_mfgv_executes_itself_carry_its_process_and_launch_record() -> None:
    from mfg_assets.instance import run_tags
    from resources.storage.processes import boot_id, machine_tag

    tags = run_tags()
    assert tags[PROCESS_TAG] == process_tag() and all(key.startswith(".dagster/") for key in tags)  # hidden in the UI
    assert json.loads(tags[LAUNCH_TAG])["machine"] == machine_tag() and json.loads(tags[LAUNCH_TAG])["boot_id"] == boot_id()
