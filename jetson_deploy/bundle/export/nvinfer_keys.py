"""The DeepStream keys an export may write, with their GKeyFile types and where NVIDIA defines them.

Every key a DeepStream export writes must be in these tables (the writer refuses any other), so a
typo cannot reach a board where nvinfer would only print "Unknown or legacy key" and carry on.
Types are the ``g_key_file_get_*`` call the parser makes for the key: ``int``, ``double``,
``bool``, ``string``, ``path`` (a string resolved relative to the config file), ``int-list``,
``double-list``, ``string-list``.

Sources (DeepStream 6.2 sources as shipped under /opt/nvidia/deepstream/deepstream/sources,
mirrored in the GitHub repository ``hiennguyen9874/deepstream-sources``):

- ``nvinfer``: ``sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.h`` (the key names)
  and ``gstnvinfer_property_parser.cpp`` (``gst_nvinfer_parse_props``: the type each key is read
  with and its allowed values), documented in NVIDIA's DeepStream Developer Guide, "Gst-nvinfer",
  table "Gst-nvinfer Property Group Supported Keys"
  (https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_plugin_gst-nvinfer.html).
- ``nvinfer-class-attrs``: the same parser's ``gst_nvinfer_parse_class_attrs`` ("Gst-nvinfer Class-attributes
  Group Supported Keys" in the guide).
- ``deepstream-app``: ``sources/apps/apps-common/src/deepstream_config_file_parser.c`` and
  ``sources/apps/sample_apps/deepstream-app/deepstream_app_config_parser.c``, as used by
  ``samples/configs/deepstream-app/source30_1080p_dec_infer-resnet_tiled_display_int8.txt``
  (DeepStream Developer Guide, "Reference Application Configuration").
"""
from typing import Dict, Tuple

SOURCES = {
    "nvinfer": "hiennguyen9874/deepstream-sources: sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.{h,cpp} "
               "(gst_nvinfer_parse_props); DeepStream Developer Guide, Gst-nvinfer, Property Group Supported Keys",
    "nvinfer-class-attrs": "hiennguyen9874/deepstream-sources: sources/gst-plugins/gst-nvinfer/gstnvinfer_property_parser.cpp "
                           "(gst_nvinfer_parse_class_attrs); DeepStream Developer Guide, Gst-nvinfer, Class-attributes Group Supported Keys",
    "deepstream-app": "hiennguyen9874/deepstream-sources: sources/apps/apps-common/src/deepstream_config_file_parser.c, "
                      "sources/apps/sample_apps/deepstream-app/deepstream_app_config_parser.c; "
                      "samples/configs/deepstream-app/source30_1080p_dec_infer-resnet_tiled_display_int8.txt",
}

KeyInfo = Tuple[str, str]  # (type, meaning with allowed values)

#: [property] group of a Gst-nvinfer config file (source: ``nvinfer``).
PROPERTY: "Dict[str, KeyInfo]" = {
    "gpu-id": ("int", "GPU to use"),
    "gie-unique-id": ("int", "unique id of this inference element (> 0), tags its metadata"),
    "process-mode": ("int", "1 = primary (full frames), 2 = secondary (objects)"),
    "interval": ("int", "frames skipped between inferences (0 = every frame)"),
    "onnx-file": ("path", "ONNX model nvinfer builds an engine from when model-engine-file is absent or does not load"),
    "model-engine-file": ("path", "serialized TensorRT plan to deserialize"),
    "int8-calib-file": ("path", "TensorRT INT8 calibration cache (INT8 builds only)"),
    "labelfile-path": ("path", "labels: one line per class (detector, segmentation) or one ';'-separated line per output (classifier)"),
    "batch-size": ("int", "frames per batch, 1..1024"),
    "network-mode": ("int", "0 = FP32, 1 = INT8, 2 = FP16"),
    "model-color-format": ("int", "0 = RGB, 1 = BGR, 2 = GRAY"),
    "net-scale-factor": ("double", "y = net-scale-factor * (x - offsets[c]) on pixels x in 0..255"),
    "offsets": ("double-list", "per-channel values subtracted from pixels before scaling, in the network's channel order"),
    "infer-dims": ("int-list", "input dimensions, c;h;w"),
    "network-input-order": ("int", "0 = NCHW, 1 = NHWC"),
    "network-type": ("int", "0 = detector, 1 = classifier, 2 = segmentation, 3 = instance segmentation, 100 = other"),
    "num-detected-classes": ("int", "number of classes a detector or segmentation network outputs"),
    "output-blob-names": ("string-list", "output tensor names, ';'-separated"),
    "output-tensor-meta": ("bool", "attach raw output tensors as metadata (network-type 100)"),
    "maintain-aspect-ratio": ("bool", "scale keeping the aspect ratio, padding with black"),
    "symmetric-padding": ("bool", "pad both sides equally when maintaining the aspect ratio"),
    "scaling-filter": ("int", "0 = nearest, 1 = bilinear (NvBufSurfTransformInter_*)"),
    "cluster-mode": ("int", "0 = group rectangles, 1 = DBSCAN, 2 = NMS, 3 = DBSCAN+NMS, 4 = none"),
    "classifier-threshold": ("double", "minimum value of the best class for a classifier label"),
    "segmentation-threshold": ("double", "minimum class confidence of a segmentation pixel"),
}

#: [class-attrs-all] group of a Gst-nvinfer config file, detectors only (source: ``nvinfer-class-attrs``).
CLASS_ATTRS: "Dict[str, KeyInfo]" = {
    "pre-cluster-threshold": ("double", "detections below this confidence are dropped before clustering"),
    "nms-iou-threshold": ("double", "IoU above which NMS suppresses the lower-scored box (0..1)"),
    "topk": ("int", "keep at most this many detections per class after clustering"),
}

#: deepstream-app configuration groups (source: ``deepstream-app``); ``source0`` etc. share ``source``'s keys.
APP: "Dict[str, Dict[str, KeyInfo]]" = {
    "application": {
        "enable-perf-measurement": ("bool", "print frames per second"),
        "perf-measurement-interval-sec": ("int", "seconds between FPS prints"),
    },
    "source": {
        "enable": ("bool", "use this source"),
        "type": ("int", "1 = camera (V4L2), 2 = URI, 3 = multi-URI, 4 = RTSP, 5 = camera (CSI)"),
        "uri": ("string", "file:// or rtsp:// URI of the stream"),
        "num-sources": ("int", "how many times the URI is opened (type 3)"),
        "gpu-id": ("int", "GPU used by the decoder"),
    },
    "streammux": {
        "gpu-id": ("int", "GPU used by nvstreammux"),
        "live-source": ("bool", "1 for cameras/RTSP, 0 for files"),
        "batch-size": ("int", "frames per batch (= the number of sources)"),
        "batched-push-timeout": ("int", "microseconds to wait for a full batch"),
        "width": ("int", "width frames are scaled to before inference"),
        "height": ("int", "height frames are scaled to before inference"),
    },
    "primary-gie": {
        "enable": ("bool", "run the primary inference element"),
        "gpu-id": ("int", "GPU to use"),
        "batch-size": ("int", "frames per batch (overrides the nvinfer config)"),
        "gie-unique-id": ("int", "unique id (matches the nvinfer config's gie-unique-id)"),
        "config-file": ("path", "the Gst-nvinfer config file"),
    },
    "osd": {
        "enable": ("bool", "draw boxes and labels"),
    },
    "sink": {
        "enable": ("bool", "use this sink"),
        "type": ("int", "1 = fakesink, 2 = EGL window, 3 = encode to file, 4 = RTSP"),
        "sync": ("bool", "0 = as fast as possible, 1 = at the stream's rate"),
    },
    "tests": {
        "file-loop": ("bool", "loop file sources"),
    },
}


def key_type(table: "Dict[str, KeyInfo]", group: str, key: str) -> str:
    """The type of ``key`` in ``table``; KeyError names the group when it is not there (a writer bug)."""
    try:
        return table[key][0]
    except KeyError:
        raise KeyError("[{}] {} is not in the DeepStream key table (nvinfer_keys.py)".format(group, key))


def app_group_keys(group: str) -> "Dict[str, KeyInfo]":
    """deepstream-app keys of ``group``: ``source0``/``sink0`` use the ``source``/``sink`` tables."""
    base = group.rstrip("0123456789")
    return APP.get(base if base in ("source", "sink") else group, {})
