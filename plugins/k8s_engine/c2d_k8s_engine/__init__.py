"""kubernetes: the c2d engine that runs each stage as pods through the Kubernetes API.

Per stage it makes a root ConfigMap owning a volume claim sized to the disk
quota, the pod key's Secret and a NetworkPolicy, runs pod-configuration, the
algorithm with exactly the granted CPU, memory and GPUs and no egress unless
allowed, then pod-publishing, follows them with watches, and reports what
happened as job events.
"""

__version__ = "0.1.0"
