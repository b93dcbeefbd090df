"""Generated from proto/rewarddance_v1.proto by scripts/gen_proto.py; do not edit."""
