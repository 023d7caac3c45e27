"""docker: the c2d engine that runs each stage as Docker containers through the Docker API.

Per stage it creates a job volume with a disk quota (a loop-mounted ext4
filesystem where it can), runs pod-configuration, the algorithm with exactly
the granted CPU, memory, disk and GPUs and no network unless allowed, then
pod-publishing, and reports what happened as job events.
"""

__version__ = "0.1.0"
