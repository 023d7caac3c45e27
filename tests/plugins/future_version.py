"""A well-behaved plugin that only speaks engine protocol version 2, which the host does not."""

from c2d.engine.v1 import engine_pb2_grpc
from c2d.plugin import serve

serve(engine_pb2_grpc.ComputeEngineServiceServicer(), name="future_version", api_versions=(2,))
