"""peewee models. Times are UNIX seconds (DoubleField: PostgreSQL's REAL, what FloatField makes, is
32 bits, a 128 s step at today's times); JSON columns hold protobuf-as-JSON or plain data.

The database is bound at run time (:func:`host.store.db.open_database`), so
the same models serve SQLite (the default) and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict

import peewee as pw

from c2d.common.v1 import common_pb2

database_proxy = pw.DatabaseProxy()


class StageResource(TypedDict):
    """One resource of a stage as its JSON columns keep it: an entry of ``Stage.resources`` (what
    it asks for, every resource of its environment with an amount) or of ``Stage.granted`` (what
    it holds while it runs, with the devices it was given)."""

    id: str
    type: common_pb2.ResourceType
    amount: float
    device_ids: NotRequired[list[str]]  # granted entries only


class JSONField(pw.TextField):
    """JSON in a TEXT column: portable across SQLite and PostgreSQL."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(pw.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Workflow(BaseModel):
    id = pw.CharField(primary_key=True)
    owner = pw.CharField(index=True)  # lower-case address
    environment_id = pw.CharField()
    free = pw.BooleanField()
    viewers = JSONField(default=list)  # lower-case addresses that may also read results
    created_at = pw.DoubleField()
    finished_at = pw.DoubleField(null=True)
    metadata = JSONField(null=True)  # the start request's free-form object (host.metadata)


class Stage(BaseModel):
    """One job: a stage of a workflow, and everything the node needs to see it through."""

    job_id = pw.CharField(primary_key=True)
    workflow = pw.ForeignKeyField(Workflow, backref="stages", on_delete="CASCADE")
    workflow_id: str  # the foreign key's value, an attribute peewee adds (the stubs don't know it)
    # The field shadows Model.index (a classmethod building an index, unused here: Meta.indexes
    # declares them), which the stubs cannot express; the column keeps its name.
    index = pw.IntegerField()  # type: ignore[assignment]
    owner = pw.CharField()
    environment_id = pw.CharField()
    engine = pw.CharField()
    status = pw.IntegerField()
    status_text = pw.TextField(default="")
    terminal = pw.BooleanField(default=False)
    spec = JSONField()  # the c2d.compute.v1.Stage as JSON
    run_after = JSONField(default=list)  # job ids this stage waits for
    resources = JSONField(default=list)  # requested: [StageResource] without device_ids
    granted = JSONField(null=True)  # while it holds capacity: [StageResource] with device_ids
    max_duration_seconds = pw.IntegerField()
    created_at = pw.DoubleField()
    queue_deadline = pw.DoubleField(null=True)  # expires in the queue after this (set once queued)
    queued_at = pw.DoubleField(null=True)  # entered the queue for capacity (after its previous stages)
    queue_limit_seconds = pw.IntegerField(null=True)  # the longest it may wait there (None: before v4)
    started_at = pw.DoubleField(null=True)  # handed to the engine
    # Times the engine process died while StartJob of this stage was unanswered (counted since v5).
    start_crashes = pw.IntegerField(default=0)
    algorithm_started_at = pw.DoubleField(null=True)
    algorithm_finished_at = pw.DoubleField(null=True)
    # Seconds the engine spent building the algorithm's image from its Dockerfile (billed; since v7).
    build_seconds = pw.DoubleField(default=0)
    finished_at = pw.DoubleField(null=True)
    exit_code = pw.IntegerField(null=True)
    oom_killed = pw.BooleanField(default=False)  # the engine says the algorithm was killed for memory
    algorithm_image = pw.CharField(default="")
    handle = pw.BlobField(null=True)  # the engine's JobHandle, serialized
    last_sequence = pw.BigIntegerField(default=0)  # of the last engine event applied
    pod_address = pw.CharField(null=True)
    pod_key = pw.BlobField(null=True)  # encrypted with the node's storage key
    pod_nonce = pw.BigIntegerField(default=0)
    pod_report = pw.IntegerField(null=True)  # the last failure status a pod reported
    stop_requested = pw.BooleanField(default=False)
    destroyed = pw.BooleanField(default=False)  # the engine has cleaned up
    results_expire_at = pw.DoubleField(null=True)

    class Meta:
        indexes = (
            (("workflow", "index"), True),
            (("owner", "created_at"), False),
            (("terminal", "environment_id"), False),
        )


class StatusEvent(BaseModel):
    id = pw.AutoField()
    stage = pw.ForeignKeyField(Stage, backref="events", on_delete="CASCADE", index=True)
    status = pw.IntegerField()
    message = pw.TextField(default="")
    time = pw.DoubleField()


class Nonce(BaseModel):
    """The last nonce accepted per signer (consumer address)."""

    address = pw.CharField(primary_key=True)
    value = pw.BigIntegerField()


class Asset(BaseModel):
    did = pw.CharField(primary_key=True)
    name = pw.CharField(default="")
    services = JSONField()  # [c2d.compute.v1.AssetService as JSON], files included: never sent out
    created_at = pw.DoubleField()


class Result(BaseModel):
    id = pw.AutoField()
    stage = pw.ForeignKeyField(Stage, backref="results", on_delete="CASCADE")
    stage_id: str  # the foreign key's value (the stage's job id), an attribute peewee adds
    index = pw.IntegerField()  # type: ignore[assignment]  # shadows Model.index, as Stage.index does
    name = pw.CharField()
    kind = pw.IntegerField()  # c2d.compute.v1.ResultKind
    size = pw.BigIntegerField()
    sha256 = pw.CharField()
    archive = pw.BooleanField(default=False)
    received = pw.BigIntegerField(default=0)
    complete = pw.BooleanField(default=False)
    created_at = pw.DoubleField()

    class Meta:
        indexes = (
            (("stage", "index"), True),
            (("stage", "kind", "name"), True),
        )


class Payment(BaseModel):
    """The escrow lock paying for one workflow, from the intent to lock to the claim.

    The row is written before the lock is sent and before the workflow exists,
    so a node killed in between finds the lock again and releases it; hence no
    foreign key. Amounts are decimal strings of the token's smallest unit.
    """

    workflow_id = pw.CharField(primary_key=True)
    status = pw.CharField(index=True)  # host.payments.states
    chain_id = pw.BigIntegerField()
    escrow = pw.CharField()
    token = pw.CharField()
    payer = pw.CharField()  # lower-case
    payee = pw.CharField()  # the node, lower-case
    lock_id = pw.CharField(index=True)  # the escrow's uint256 jobId, decimal
    amount = pw.CharField()  # locked
    quote = JSONField()  # the c2d.compute.v1.EscrowQuote as JSON: prices fixed at start
    expiry = pw.DoubleField(null=True)  # when the lock expires, by the node's clock (a little early)
    lock_block = pw.BigIntegerField(null=True)
    lock_tx = pw.CharField(default="")
    claim_amount = pw.CharField(default="")
    claim_tx = pw.CharField(default="")
    records = pw.BlobField(null=True)  # the signed payment records (c2d.billing)
    signature = pw.BlobField(null=True)
    digest = pw.CharField(default="")
    attempts = pw.IntegerField(default=0)
    next_attempt_at = pw.DoubleField(default=0.0)
    last_error = pw.TextField(default="")
    created_at = pw.DoubleField()
    updated_at = pw.DoubleField()


class RevokedToken(BaseModel):
    """An Ocean auth token its owner revoked (host.web.ocean.tokens), by its id (the JWT's jti),
    kept until the token would have expired anyway."""

    token_id = pw.CharField(primary_key=True)
    address = pw.CharField()  # lower-case: the token's owner
    expires_at = pw.DoubleField(index=True)
    revoked_at = pw.DoubleField()


ALL_MODELS: list[type[BaseModel]] = [
    Workflow,
    Stage,
    StatusEvent,
    Nonce,
    Asset,
    Result,
    Payment,
    RevokedToken,
]
