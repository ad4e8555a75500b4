"""The OpenPose body network (plain torch)."""

from services.pose.models.openpose_body import BodyPoseModel, OpenPoseConfig

__all__ = ["BodyPoseModel", "OpenPoseConfig"]
