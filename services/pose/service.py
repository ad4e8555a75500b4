"""The pose stage over gRPC: a thin adapter from vton.v1.PoseService to the selected backend."""

from __future__ import annotations

import grpc

from services.pose.backends import BACKENDS
from services.pose.openpose_format import draw_skeleton, pose_map, to_openpose_json
from services.pose.types import PoseBackend
from vton.runtime import messages, server
from vton.runtime.vocab import Stage
from vton.v1 import pose_pb2, pose_pb2_grpc


class PoseServicer(pose_pb2_grpc.PoseServiceServicer, server.StageServicer[PoseBackend]):
    def EstimatePose(
        self, request: pose_pb2.EstimatePoseRequest, context: grpc.ServicerContext
    ) -> pose_pb2.EstimatePoseResponse:
        image = messages.rgb_from(request.image, "image")
        height, width = image.shape[:2]
        estimate = self.in_slot(self.backend.estimate, image)
        return pose_pb2.EstimatePoseResponse(
            keypoints=messages.keypoints(estimate.keypoints),
            openpose_json=to_openpose_json(estimate.keypoints),
            skeleton=messages.png_image(draw_skeleton(estimate.keypoints, width, height)),
            pose_map=messages.tensor(pose_map(estimate.keypoints, width, height)),
            people_detected=estimate.people_detected,
            backend=messages.backend_info(self.info),
        )


build_server = server.stage_builder(
    Stage.POSE, pose_pb2_grpc.add_PoseServiceServicer_to_server, PoseServicer, BACKENDS
)
