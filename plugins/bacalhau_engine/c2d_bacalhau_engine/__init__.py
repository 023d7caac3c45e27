"""bacalhau: the c2d engine that runs each stage as Bacalhau batch jobs through the orchestrator's API.

Per stage it lays out the job's folder under a work root the compute nodes
mount, runs pod-configuration, the algorithm (with exactly the granted CPU,
memory, disk and GPUs, no network unless allowed, the time limit as the
execution timeout) and pod-publishing as one Bacalhau job each, follows them
through the orchestrator, and reports what happened as job events.
"""

__version__ = "0.1.0"
