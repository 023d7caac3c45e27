"""Who may see and touch which jobs: owners, the viewers they named, and the operator."""

from __future__ import annotations

from c2d.quoting import quoted
from host.errors import denied, not_found
from host.store.models import Stage, Workflow


def visible_stage(job_id: str, caller: str) -> Stage:
    """The stage if ``caller`` owns it or is a viewer; NOT_FOUND otherwise, so existence never leaks."""
    stage = Stage.get_or_none(Stage.job_id == job_id) if job_id else None
    if stage is None or not _may_read(stage.workflow, caller):
        raise not_found(f"no job {quoted(job_id)} for {caller}")
    return stage


def visible_workflow(workflow_id: str, caller: str) -> Workflow:
    workflow = Workflow.get_or_none(Workflow.id == workflow_id) if workflow_id else None
    if workflow is None or not _may_read(workflow, caller):
        raise not_found(f"no workflow {quoted(workflow_id)} for {caller}")
    return workflow


def owned_stages(caller: str, *, job_id: str = "", workflow_id: str = "") -> list[Stage]:
    """Stages the caller may stop: its own only (viewers read, they do not stop)."""
    if job_id:
        stages = [visible_stage(job_id, caller)]
    else:
        stages = list(visible_workflow(workflow_id, caller).stages.order_by(Stage.index))
    if any(stage.owner != caller for stage in stages):
        raise denied("only the workflow's owner can stop it")
    return stages


def _may_read(workflow: Workflow, caller: str) -> bool:
    return caller == workflow.owner or caller in workflow.viewers
