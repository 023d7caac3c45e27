"""Who may see and touch which jobs: owners, the viewers they named, and the operator.

The lookups read the database, so they run on the database thread: inside a
:func:`host.store.runner.run` unit together with what the handler reads next, or through
the ``readable_*`` coroutines when the check is all a handler's step needs.
"""

from __future__ import annotations

from c2d.quoting import quoted
from host.errors import denied, not_found
from host.store import jobs, runner
from host.store.models import Stage, Workflow


def visible_stage(job_id: str, caller: str) -> Stage:
    """The stage if ``caller`` owns it or is a viewer; NOT_FOUND otherwise, so existence never leaks.

    Its ``workflow`` is loaded with it (id, owner, viewers, free): reading it loads nothing more.
    """
    stage = jobs.stage_with_workflow(job_id)
    if stage is None or not _may_read(stage.workflow, caller):
        raise not_found(f"no job {quoted(job_id)} for {caller}")
    return stage


def visible_workflow(workflow_id: str, caller: str) -> Workflow:
    """The workflow if ``caller`` owns it or is a viewer; NOT_FOUND otherwise. Its request is not loaded."""
    workflow = jobs.workflow(workflow_id)
    if workflow is None or not _may_read(workflow, caller):
        raise not_found(f"no workflow {quoted(workflow_id)} for {caller}")
    return workflow


def owned_stages(caller: str, *, job_id: str = "", workflow_id: str = "") -> list[Stage]:
    """Stages the caller may stop: its own only (viewers read, they do not stop)."""
    if job_id:
        stages = [visible_stage(job_id, caller)]
    else:
        stages = jobs.workflow_stages(visible_workflow(workflow_id, caller).id)
    if any(stage.owner != caller for stage in stages):
        raise denied("only the workflow's owner can stop it")
    return stages


async def readable_stage(job_id: str, caller: str) -> Stage:
    """:func:`visible_stage` as a unit of its own on the database thread."""
    return await runner.run(visible_stage, job_id, caller)


def _may_read(workflow: Workflow, caller: str) -> bool:
    return caller == workflow.owner or caller in workflow.viewers
