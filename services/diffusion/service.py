"""The try-on stage over gRPC: a thin adapter from vton.v1.DiffusionService to the selected backend."""

from __future__ import annotations

from services.diffusion.backend_protocol import TryOnBackend
from services.diffusion.backends import BACKENDS
from services.diffusion.types import TryOnInputs
from vton.runtime import messages, server
from vton.runtime.options import validate_options
from vton.runtime.vocab import Stage
from vton.v1 import diffusion_pb2, diffusion_pb2_grpc


class DiffusionServicer(diffusion_pb2_grpc.DiffusionServiceServicer, server.StageServicer[TryOnBackend]):
    def TryOn(self, request, context) -> diffusion_pb2.TryOnResponse:
        raw = request.options
        options = validate_options(
            messages.category_from(raw), raw.seed, raw.steps, raw.guidance_scale, raw.scheduler
        )
        person = messages.rgb_from(request.person, "person")
        inputs = TryOnInputs(
            person=person,
            masked_person=messages.rgb_from(request.masked_person, "masked_person"),
            agnostic_mask=messages.gray_from(request.agnostic_mask, "agnostic_mask"),
            warped_garment=messages.rgb_from(request.warped_garment, "warped_garment"),
            warped_mask=messages.gray_from(request.warped_mask, "warped_mask"),
            garment=messages.rgb_from(request.garment, "garment"),
            labels=messages.labels_from(request.label_map),
            category=options.category,
            pose_map=messages.optional_array(request.pose_map, "pose_map"),
            keypoints=messages.keypoints_from(request.keypoints) if request.keypoints else None,
            seed=options.seed,
            steps=options.steps,
            guidance_scale=options.guidance_scale,
            scheduler=options.scheduler,
            width=raw.width,
            height=raw.height,
            on_step=server.check_cancelled,
        )
        messages.check_person_sized(
            person.shape[:2],
            masked_person=messages.spatial(inputs.masked_person),
            agnostic_mask=messages.spatial(inputs.agnostic_mask),
            warped_garment=messages.spatial(inputs.warped_garment),
            warped_mask=messages.spatial(inputs.warped_mask),
            label_map=messages.spatial(inputs.labels),
            pose_map=messages.spatial(inputs.pose_map, channels_first=True),
        )
        image = self.in_slot(self.backend.try_on, inputs)
        return diffusion_pb2.TryOnResponse(
            image=messages.png_image(image), backend=messages.backend_info(self.info)
        )


build_server = server.stage_builder(
    Stage.DIFFUSION,
    diffusion_pb2_grpc.add_DiffusionServiceServicer_to_server,
    DiffusionServicer,
    BACKENDS,
)
