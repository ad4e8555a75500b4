"""Conversions between numpy arrays and the vton.v1 messages, with the checks a server needs on input."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

from vton.runtime import images
from vton.runtime.backend import BackendInfo
from vton.runtime.errors import InvalidInput
from vton.runtime.proto_vocab import category_of
from vton.runtime.vocab import NUM_KEYPOINTS, Category, LabelSet
from vton.v1 import common_pb2

_DTYPES = {"uint8": np.uint8, "float16": np.float16, "float32": np.float32}


def png_image(arr: np.ndarray) -> common_pb2.Image:
    return common_pb2.Image(
        data=images.encode_png(arr), width=arr.shape[1], height=arr.shape[0], format="png"
    )


def rgb_from(msg: common_pb2.Image, what: str) -> np.ndarray:
    """The image as the user sees it (upright, 8-bit RGB, transparency on white), or InvalidInput naming `what`."""
    return _decoded(msg, what, images.decode_rgb)


def gray_from(msg: common_pb2.Image, what: str) -> np.ndarray:
    return _decoded(msg, what, images.decode_gray)


def _decoded(msg: common_pb2.Image, what: str, decode: Callable[[bytes], np.ndarray]) -> np.ndarray:
    try:
        arr = decode(msg.data)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    _check_declared_size(msg, arr, what)
    return arr


def optional_gray(msg: common_pb2.Image, what: str) -> np.ndarray | None:
    return gray_from(msg, what) if msg.data else None


def _check_declared_size(msg: common_pb2.Image, arr: np.ndarray, what: str) -> None:
    if (msg.width or msg.height) and (msg.width, msg.height) != (arr.shape[1], arr.shape[0]):
        raise InvalidInput(
            f"{what}: declared size {msg.width}x{msg.height} differs from the image's {arr.shape[1]}x{arr.shape[0]} "
            "(as shown, its EXIF orientation applied)"
        )


def tensor(arr: np.ndarray) -> common_pb2.Tensor:
    dtype = str(arr.dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported tensor dtype {dtype}")
    data = zlib.compress(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes(), 1)
    return common_pb2.Tensor(shape=list(arr.shape), dtype=dtype, data=data)


def array_from(msg: common_pb2.Tensor, what: str) -> np.ndarray:
    if msg.dtype not in _DTYPES:
        raise InvalidInput(f"{what}: unsupported dtype {msg.dtype!r}")
    try:
        raw = zlib.decompress(msg.data)
    except zlib.error:
        raise InvalidInput(f"{what}: the data is not zlib-compressed") from None
    dtype = np.dtype(_DTYPES[msg.dtype]).newbyteorder("<")
    count = int(np.prod(msg.shape)) if msg.shape else 0
    if count * dtype.itemsize != len(raw):
        raise InvalidInput(f"{what}: {len(raw)} bytes do not fit shape {list(msg.shape)} of {msg.dtype}")
    return np.frombuffer(raw, dtype).reshape(tuple(msg.shape)).astype(_DTYPES[msg.dtype])


def optional_array(msg: common_pb2.Tensor, what: str) -> np.ndarray | None:
    return array_from(msg, what) if msg.data else None


def keypoints(arr: np.ndarray) -> list[common_pb2.Keypoint]:
    return [common_pb2.Keypoint(x=float(x), y=float(y), confidence=float(c)) for x, y, c in arr]


def keypoints_from(msgs: Sequence[common_pb2.Keypoint], what: str = "keypoints") -> np.ndarray:
    if len(msgs) != NUM_KEYPOINTS:
        raise InvalidInput(
            f"{what}: expected {NUM_KEYPOINTS} keypoints in OpenPose COCO-18 order, got {len(msgs)}"
        )
    return np.array([[k.x, k.y, k.confidence] for k in msgs], np.float32)


def label_map(labels: np.ndarray, label_set: str) -> common_pb2.LabelMap:
    return common_pb2.LabelMap(image=png_image(labels), label_set=label_set)


def labels_from(msg: common_pb2.LabelMap, what: str = "label_map") -> np.ndarray:
    if msg.label_set and msg.label_set != LabelSet.LIP:
        raise InvalidInput(
            f"{what}: label set {msg.label_set!r} given; this stage takes {LabelSet.LIP.value!r}"
        )
    return gray_from(msg.image, what)


def category_from(options: common_pb2.TryOnOptions) -> Category:
    """The request's category; unset or unknown is InvalidInput naming the choices."""
    return category_of(options.category, "options.category")


def working_size(options: common_pb2.TryOnOptions, default: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) a request asks the networks to run at, else the backend's declared working size; (0, 0)
    leaves the choice to the backend."""
    if options.width or options.height:
        return options.height, options.width
    return default or (0, 0)


def backend_info(info: BackendInfo) -> common_pb2.BackendInfo:
    return common_pb2.BackendInfo(
        name=info.name, version=info.version, kind=info.kind, weights_license=info.weights_license
    )


def check_person_sized(person_hw: tuple[int, int], **sizes: tuple[int, ...] | None) -> None:
    """Every per-pixel input must have the person image's (height, width); name the one that does not."""
    for name, size in sizes.items():
        if size is not None and tuple(size) != tuple(person_hw):
            raise InvalidInput(
                f"{name} is {size[1]}x{size[0]}; the person image is {person_hw[1]}x{person_hw[0]}"
            )


def spatial(arr: np.ndarray | None, channels_first: bool = False) -> tuple[int, int] | None:
    """(height, width) of an optional image-like array: [H, W], [H, W, C] or, channels first, [C, H, W]."""
    if arr is None:
        return None
    first = 1 if channels_first else 0
    return arr.shape[first], arr.shape[first + 1]
