"""Jobs: StartJob, the event stream, StopJob, DestroyJob, time limits, ListJobs, logs and recovery.

Commands are POSIX sh using only busybox tools (echo, sleep, cat, sh, exit,
ls), so container engines can run them in a tiny busybox image (the
``image``/``tag`` of the EngineSpec's ``conformance`` dict).
See docs/engine-plugins.md, "Semantics every engine keeps".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
import pytest

from c2d.conformance.harness import (
    JOB_START_TIMEOUT,
    EngineProcess,
    Status,
    describe,
    event_key,
    expect_rpc_error,
    new_job_id,
)
from c2d.conformance.plugin import FinishedJob, FreshEngine
from c2d.engine.v1 import engine_pb2

STOP_GRACE_SECONDS = 2
TIME_LIMIT_SECONDS = 2


def status_name(status: int) -> str:
    return Status.Name(status)


def check_events(
    events: Sequence[engine_pb2.JobEvent], job_id: str, *, first_sequence: int = 1, complete: bool = True
) -> None:
    """What every job's event stream keeps: numbering, job id, one terminal event at the end.

    ``complete``: the events run to the terminal one (a whole stream, not a prefix).
    """
    shown = describe(events)
    assert events, f"WatchJob({job_id}) sent no events"
    for i, event in enumerate(events):
        assert event.sequence == first_sequence + i, (
            f"event sequences must rise by one from {first_sequence}: event {i} has sequence "
            f"{event.sequence}, expected {first_sequence + i}; events: {shown}"
        )
        assert event.job_id == job_id, (
            f"event #{event.sequence} carries job_id {event.job_id!r}, expected {job_id!r}"
        )
    terminal = [e for e in events if e.terminal]
    if complete:
        assert len(terminal) == 1, f"a job's events must hold exactly one terminal event, got: {shown}"
        assert events[-1].terminal, f"the terminal event must be the last one, got: {shown}"
    else:
        assert not terminal or (len(terminal) == 1 and events[-1].terminal), (
            f"a terminal event may only be the last one, got: {shown}"
        )


def check_ran(events: Sequence[engine_pb2.JobEvent], expected: int) -> engine_pb2.JobEvent:
    """The algorithm started (RUNNING with algorithm_started) and ended with status ``expected``."""
    shown = describe(events)
    statuses = [e.status for e in events]
    assert Status.JOB_STATUS_RUNNING in statuses, f"RUNNING must come before the terminal event, got: {shown}"
    running = events[statuses.index(Status.JOB_STATUS_RUNNING)]
    assert running.HasField("algorithm_started"), (
        f"the RUNNING event (#{running.sequence}) must carry algorithm_started; events: {shown}"
    )
    assert statuses.count(Status.JOB_STATUS_RUNNING) == 1, f"RUNNING must be reported once, got: {shown}"
    last = events[-1]
    assert last.status == expected, (
        f"the terminal status must be {status_name(expected)}, got {status_name(last.status)}; "
        f"events: {shown}"
    )
    return last


# The whole life of a job.


def test_job_runs_to_finished(hello_job: FinishedJob) -> None:
    events = hello_job.events
    check_events(events, hello_job.job_id)
    assert hello_job.watched.ended, "WatchJob must end after the terminal event"
    last = check_ran(events, Status.JOB_STATUS_FINISHED)
    assert last.HasField("exit_code") and last.exit_code == 0, (
        f"FINISHED must carry exit_code 0, got {last.exit_code if last.HasField('exit_code') else 'none'}"
    )
    assert last.HasField("algorithm_finished"), (
        "the terminal event of a job whose algorithm ran needs algorithm_finished"
    )
    assert hello_job.handle.job_id == hello_job.job_id, (
        f"StartJob's handle must name the job: handle.job_id is {hello_job.handle.job_id!r}, "
        f"expected {hello_job.job_id!r}"
    )


def test_failing_algorithm_reports_its_exit_code(engine: EngineProcess) -> None:
    spec, _ = engine.run("echo failing; exit 3")
    events = engine.watch(spec.job_id).events
    check_events(events, spec.job_id)
    last = check_ran(events, Status.JOB_STATUS_ALGORITHM_FAILED)
    assert last.HasField("exit_code") and last.exit_code == 3, (
        f"ALGORITHM_FAILED for `exit 3` must carry exit_code 3, got "
        f"{last.exit_code if last.HasField('exit_code') else 'none'}"
    )
    assert last.HasField("algorithm_finished"), "ALGORITHM_FAILED needs algorithm_finished"


def test_start_job_is_idempotent(engine: EngineProcess) -> None:
    """The node retries StartJob after a lost reply; the job must run once."""
    spec = engine.job_spec("sleep 1; echo once")
    first = engine.start_job(spec)
    again = engine.start_job(spec)
    assert again == first, (
        f"a second StartJob with the same job_id must return the same handle: {first} != {again}"
    )
    events = engine.watch(spec.job_id).events
    check_events(events, spec.job_id)
    running = [e for e in events if e.status == Status.JOB_STATUS_RUNNING]
    assert len(running) == 1, f"a job started twice must run once (one RUNNING), got: {describe(events)}"
    after_end = engine.start_job(spec)
    assert after_end == first, (
        "StartJob with the id of an ended job must return its handle and start nothing: "
        f"{first} != {after_end}"
    )
    replay = engine.watch(spec.job_id).events
    assert [event_key(e) for e in replay] == [event_key(e) for e in events], (
        f"StartJob on an ended job must not start it again; events before: {describe(events)}, "
        f"after: {describe(replay)}"
    )


@pytest.mark.parametrize("problem", ["empty job_id", "empty command", "unknown environment"])
def test_start_job_validates_the_spec(problem: str, engine: EngineProcess) -> None:
    if problem == "empty job_id":
        spec = engine.job_spec("echo hello", job_id="")
    elif problem == "empty command":
        spec = engine.job_spec("")
    else:
        spec = engine.job_spec("echo hello", environment_id=f"no-such-environment-{new_job_id()}")
    if spec.job_id:
        engine.jobs.add(spec.job_id)
    error = expect_rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"StartJob with {problem}",
        lambda: engine.stub.StartJob(engine_pb2.StartJobRequest(spec=spec), timeout=30.0),
    )
    assert error.details(), f"INVALID_ARGUMENT for {problem} must come with a message saying what is wrong"


# Stopping, destroying, time limits.


def test_stop_job(engine: EngineProcess) -> None:
    spec, _ = engine.run("sleep 300")
    before = engine.watch_until_running(spec.job_id)
    assert before.events[-1].status == Status.JOB_STATUS_RUNNING, (
        f"`sleep 300` must reach RUNNING, got: {describe(before.events)}"
    )
    stopped_at = time.monotonic()
    engine.stop_job(spec.job_id, grace_seconds=STOP_GRACE_SECONDS)
    limit = STOP_GRACE_SECONDS + 10
    after = engine.watch(spec.job_id, after=before.last_sequence, timeout=limit).events
    took = time.monotonic() - stopped_at
    events = before.events + after
    check_events(events, spec.job_id)
    last = events[-1]
    assert last.status == Status.JOB_STATUS_STOPPED and last.stopped, (
        f"StopJob must end the job with STOPPED and stopped=true, got: {describe(events)}"
    )
    assert took <= limit, f"StopJob(grace_seconds={STOP_GRACE_SECONDS}) took {took:.1f}s to end the job"
    try:
        engine.stop_job(spec.job_id, grace_seconds=STOP_GRACE_SECONDS)
    except grpc.RpcError as exc:
        pytest.fail(f"StopJob on a stopped job must succeed, got {exc.code().name}: {exc.details()}")
    replay = engine.watch(spec.job_id).events
    assert [event_key(e) for e in replay] == [event_key(e) for e in events], (
        f"a second StopJob must not change a stopped job's events; before: {describe(events)}, "
        f"after: {describe(replay)}"
    )


def test_stop_of_ended_or_unknown_job_succeeds(engine: EngineProcess, hello_job: FinishedJob) -> None:
    for job_id, which in ((hello_job.job_id, "an ended job"), (new_job_id(), "an unknown job")):
        try:
            engine.stop_job(job_id)
            engine.stop_job(job_id)
        except grpc.RpcError as exc:
            pytest.fail(f"StopJob on {which} must succeed, got {exc.code().name}: {exc.details()}")
    events = engine.watch(hello_job.job_id).events
    assert events[-1].status == Status.JOB_STATUS_FINISHED, (
        f"StopJob on an ended job must not change its outcome, got: {describe(events)}"
    )


@pytest.mark.parametrize("state", ["ended", "running"])
def test_destroy_job(state: str, engine: EngineProcess) -> None:
    """DestroyJob removes a job (stopping it first if needed); it is gone for good afterwards."""
    if state == "ended":
        spec, handle = engine.run("echo bye")
        engine.watch(spec.job_id)
    else:
        spec, handle = engine.run("sleep 300")
        engine.watch_until_running(spec.job_id)
    job_id = spec.job_id
    for attempt in ("DestroyJob", "DestroyJob again"):
        try:
            engine.destroy_job(job_id)
        except grpc.RpcError as exc:
            pytest.fail(f"{attempt} on a {state} job must succeed, got {exc.code().name}: {exc.details()}")
    listed = [j.job_id for j in engine.list_jobs()]
    assert job_id not in listed, f"a destroyed job must leave ListJobs, but it still lists {job_id}"
    expect_rpc_error(
        grpc.StatusCode.NOT_FOUND, "RecoverJob of a destroyed job", lambda: engine.recover_job(handle)
    )
    engine.jobs.discard(job_id)
    try:
        engine.destroy_job(new_job_id())
    except grpc.RpcError as exc:
        pytest.fail(f"DestroyJob on an unknown job must succeed, got {exc.code().name}: {exc.details()}")


def test_time_limit(engine: EngineProcess) -> None:
    spec, _ = engine.run("sleep 300", max_duration_seconds=TIME_LIMIT_SECONDS)
    before = engine.watch_until_running(spec.job_id)
    started = time.monotonic()
    limit = 15.0
    after = engine.watch(spec.job_id, after=before.last_sequence, timeout=limit).events
    took = time.monotonic() - started
    events = before.events + after
    check_events(events, spec.job_id)
    last = events[-1]
    assert last.status == Status.JOB_STATUS_TIMED_OUT and last.timed_out, (
        f"`sleep 300` with max_duration_seconds={TIME_LIMIT_SECONDS} must end TIMED_OUT with timed_out=true, "
        f"got: {describe(events)}"
    )
    assert took <= limit, f"the time limit of {TIME_LIMIT_SECONDS}s took {took:.1f}s to end the job"


# Watching and finding jobs.


@pytest.mark.parametrize("call", ["WatchJob", "RecoverJob"])
def test_unknown_job_is_not_found(call: str, engine: EngineProcess) -> None:
    job_id = new_job_id()
    if call == "WatchJob":
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND,
            "WatchJob of an unknown job",
            lambda: list(engine.stub.WatchJob(engine_pb2.WatchJobRequest(job_id=job_id), timeout=30.0)),
        )
    else:
        handle = engine_pb2.JobHandle(job_id=job_id, version=1)
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND, "RecoverJob of an unknown job", lambda: engine.recover_job(handle)
        )


def test_watch_replays_all_events_after_the_end(engine: EngineProcess, hello_job: FinishedJob) -> None:
    replay = engine.watch(hello_job.job_id, after=0)
    assert replay.ended, "WatchJob of an ended job must end after replaying its terminal event"
    assert [event_key(e) for e in replay.events] == [event_key(e) for e in hello_job.events], (
        f"WatchJob(after_sequence=0) after the end must replay the same events; live: "
        f"{describe(hello_job.events)}, replayed: {describe(replay.events)}"
    )


def test_watch_skips_events_up_to_after_sequence(engine: EngineProcess, hello_job: FinishedJob) -> None:
    events = hello_job.events
    for after in sorted({1, len(events) - 1}):
        if after < 1:
            continue
        replay = engine.watch(hello_job.job_id, after=after).events
        assert [event_key(e) for e in replay] == [event_key(e) for e in events[after:]], (
            f"WatchJob(after_sequence={after}) must send the events after #{after}; all events: "
            f"{describe(events)}, sent: {describe(replay)}"
        )


def test_recover_job_returns_the_last_event(engine: EngineProcess, hello_job: FinishedJob) -> None:
    reply = engine.recover_job(hello_job.handle)
    assert event_key(reply.last_event) == event_key(hello_job.events[-1]), (
        f"RecoverJob must return the job's last event {describe(hello_job.events[-1:])}, "
        f"got {describe([reply.last_event])}"
    )
    assert reply.handle.job_id == hello_job.job_id, f"RecoverJob's handle names job {reply.handle.job_id!r}"


def test_list_jobs_includes_running_and_ended_jobs(engine: EngineProcess, hello_job: FinishedJob) -> None:
    spec, _ = engine.run("sleep 300")
    jobs = {j.job_id: j for j in engine.list_jobs()}
    assert spec.job_id in jobs, (
        f"ListJobs must include a job just started ({spec.job_id}); it lists {sorted(jobs)}"
    )
    running = jobs[spec.job_id]
    assert running.workflow_id == spec.workflow_id, (
        f"ListJobs gives workflow_id {running.workflow_id!r} for the job, expected {spec.workflow_id!r}"
    )
    assert not running.terminal, f"a job just started is not terminal, ListJobs says {running}"
    assert hello_job.job_id in jobs, "ListJobs must include ended jobs until they are destroyed"
    ended = jobs[hello_job.job_id]
    assert ended.terminal and ended.status == Status.JOB_STATUS_FINISHED, (
        f"ListJobs must show the ended hello job as terminal FINISHED, got terminal={ended.terminal} "
        f"status={status_name(ended.status)}"
    )
    engine.stop_job(spec.job_id, grace_seconds=0)


def test_stream_job_logs(engine: EngineProcess, hello_job: FinishedJob) -> None:
    if not engine.fingerprint().capabilities.log_streaming:
        pytest.skip("the engine does not declare capabilities.log_streaming")
    chunks = engine.stream_logs(hello_job.job_id, offset=0)
    data = b"".join(d for _, d in chunks)
    assert b"hello" in data, f"StreamJobLogs of `echo hello` must contain 'hello', got {data[:500]!r}"
    position = 0
    for offset, piece in chunks:
        assert offset == position, (
            f"StreamJobLogs chunk offsets must be contiguous from 0: {offset} != {position}"
        )
        position += len(piece)
    followed = b"".join(d for _, d in engine.stream_logs(hello_job.job_id, offset=0, follow=True))
    assert followed == data, "StreamJobLogs with follow on an ended job must send the same logs and end"
    if len(data) > 1:
        tail = engine.stream_logs(hello_job.job_id, offset=1)
        assert b"".join(d for _, d in tail) == data[1:], (
            "StreamJobLogs(offset=1) must send the logs from byte 1"
        )
        assert tail and tail[0][0] == 1, f"StreamJobLogs(offset=1) must start at offset 1, got {tail[:1]}"


# Recovery.


def test_job_survives_a_plugin_crash(fresh_engine: FreshEngine) -> None:
    """The plugin is SIGKILLed mid-job; a new one, configured alike, recovers the job and its events."""
    first = fresh_engine()
    spec, handle = first.run("sleep 4; echo done")
    before = first.watch_until_running(spec.job_id, timeout=JOB_START_TIMEOUT)
    assert before.events[-1].status == Status.JOB_STATUS_RUNNING, (
        f"the job must reach RUNNING, got: {describe(before.events)}"
    )
    first.kill()
    first.jobs.discard(spec.job_id)

    second = fresh_engine(state_dir=first.state_dir, host_id=first.host_id)
    second.jobs.add(spec.job_id)
    try:
        recovered = second.recover_job(handle)
    except grpc.RpcError as exc:
        pytest.fail(
            f"RecoverJob after a plugin crash (same state_dir and host_id) must succeed, got "
            f"{exc.code().name}: {exc.details()}; jobs must survive the plugin"
        )
    assert recovered.last_event.sequence >= before.last_sequence, (
        f"RecoverJob's last event #{recovered.last_event.sequence} is older than #{before.last_sequence}, "
        "which the crashed plugin already sent: events must survive a plugin restart"
    )
    after = second.watch(spec.job_id, after=before.last_sequence, timeout=30.0).events
    events = before.events + after
    check_events(events, spec.job_id)
    check_ran(events, Status.JOB_STATUS_FINISHED)
    replay = second.watch(spec.job_id, after=0).events
    assert [event_key(e) for e in replay] == [event_key(e) for e in events], (
        f"after the restart WatchJob(after_sequence=0) must replay every event; seen: {describe(events)}, "
        f"replayed: {describe(replay)}"
    )
    assert spec.job_id in {j.job_id for j in second.list_jobs()}, (
        "ListJobs after the restart must list the job"
    )
