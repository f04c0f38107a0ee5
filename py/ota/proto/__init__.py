"""Generated protobuf modules (ota_manifest_pb2), made by the build, never committed."""
