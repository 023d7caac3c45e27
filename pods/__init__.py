"""The pods: pod-configuration and pod-publishing, run around a stage's algorithm.

``python -m pods.configuration`` provisions the stage's inputs and algorithm
into ``$C2D_DATA`` before the algorithm runs; ``python -m pods.publishing``
uploads its outputs and logs afterwards. Both call the node back over its
PodService (``proto/c2d/pod/v1/pod.proto``), every call signed with the stage's
own pod key, and both survive a node restart by retrying and resuming.
"""
