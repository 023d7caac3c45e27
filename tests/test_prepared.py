"""host.store.prepared: a query rendered once answers exactly as the same peewee query does, every time."""

from __future__ import annotations

from pathlib import Path

import peewee as pw

from host.store.db import open_database
from host.store.models import Stage, Workflow
from host.store.prepared import Prepared

BY_IDS: Prepared[Stage] = Prepared(
    lambda ids: Stage.select().where(Stage.job_id.in_(ids)).order_by(Stage.job_id)
)
OPEN_COUNT: Prepared[Stage] = Prepared(
    lambda wf: Stage.select(pw.fn.COUNT(Stage.job_id)).where(
        (Stage.workflow == wf) & (Stage.terminal == False)
    )
)
SOME_COLUMNS: Prepared[Stage] = Prepared(
    lambda ids: Stage.select(Stage.job_id, Stage.granted, Stage.terminal).where(Stage.job_id.in_(ids))
)
END: Prepared[Stage] = Prepared(
    lambda status, job_id: Stage.update({Stage.status: status, Stage.terminal: True}).where(
        (Stage.job_id == job_id) & (Stage.terminal == False)
    )
)


def fill(data_dir: Path) -> None:
    open_database(data_dir)
    Workflow.create(id="w", owner="o", environment_id="e", free=True, request={}, created_at=1.0)
    for i in range(3):
        Stage.create(
            job_id=f"j{i}",
            workflow="w",
            index=i,
            owner="o",
            environment_id="e",
            engine="x",
            status=1,
            spec={"algorithm": {"rawcode": f"echo {i}"}},
            run_after=["j0"] if i else [],
            resources=[{"id": "cpu", "amount": 1.5}],
            granted=[{"id": "cpu", "amount": 1.5, "device_ids": []}] if i == 0 else None,
            max_duration_seconds=5,
            created_at=1.0 + i,
            handle=b"\x00\xffhandle" if i == 1 else None,
            terminal=i == 2,
            algorithm_started_at=2.5 if i else None,
        )


def test_rows_equal_peewee_rows_field_by_field(tmp_path: Path) -> None:
    fill(tmp_path)
    for ids in (["j0", "j1", "j2"], ["j1"], ["j2", "nope", "j0"]):
        got = BY_IDS.rows(ids)
        expected = list(Stage.select().where(Stage.job_id.in_(ids)).order_by(Stage.job_id))
        assert [r.__data__ for r in got] == [r.__data__ for r in expected]
        assert [{k: type(v) for k, v in r.__data__.items()} for r in got] == [
            {k: type(v) for k, v in r.__data__.items()} for r in expected
        ]
        assert all(not r._dirty and r.workflow_id == "w" for r in got)
    assert BY_IDS.rows([]) == []
    partial = {r.job_id: r for r in SOME_COLUMNS.rows(["j0", "j2"])}
    assert (
        partial["j0"].granted == [{"id": "cpu", "amount": 1.5, "device_ids": []}]
        and not partial["j0"].terminal
    )
    assert partial["j2"].granted is None and partial["j2"].terminal is True


def test_scalar_and_update_see_each_change_and_a_new_database(tmp_path: Path) -> None:
    fill(tmp_path / "one")
    assert OPEN_COUNT.scalar("w") == 2
    assert END.execute(70, "j0") == 1
    assert END.execute(70, "j0") == 0  # guarded: it has ended
    assert OPEN_COUNT.scalar("w") == 1 and Stage.get_by_id("j0").status == 70
    row = BY_IDS.rows(["j0"])[0]
    row.status = 80
    row.save()  # instances behave as peewee's own
    assert Stage.get_by_id("j0").status == 80
    fill(tmp_path / "two")  # another database bound: the queries run there
    assert OPEN_COUNT.scalar("w") == 2 and BY_IDS.rows(["j0"])[0].status == 1
