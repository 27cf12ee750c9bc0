"""The python-backend models of an edgepose Triton repository; they run inside tritonserver.

`edgepose export-triton` copies this file and the edgepose modules it imports
(:func:`edgepose.serving.shipping.shipped_files`) into ``REPO/edgepose/lib``; each
generated ``model.py`` imports one class from here.  The server's Python needs only numpy,
OpenCV and (for ``OnnxModel``) onnxruntime -- never torch, onnx or tritonclient.

* :class:`OnnxModel` -- ``det``/``pose`` of the ``python`` variant: onnxruntime in the python
  backend.  With ``max_batch_size > 0`` every request of one execution (the dynamic batcher
  gathers them, from any camera) goes through ONE onnxruntime call.
* :class:`CropModel` -- :func:`edgepose.pipeline.preprocess.crop_people`.
* :class:`DecodeModel` -- the pipeline's keypoint decode (``PoseEstimator.decode``).
* :class:`EntryModel` -- ``edgepose``: BLS.  Detection (preprocess, ``det``, decode, person
  selection) is :meth:`Pipeline.detect` with ``det`` called through BLS; then ``crop``,
  ``pose`` (split at its max batch by ``PoseEstimator.run_batch``) and ``decode``.  BLS rather
  than an ensemble because a frame may hold no person (an ensemble cannot skip ``pose``,
  and a batch of 0 is not a valid request) or more people than ``pose`` takes at once.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepose.backends.base import Runner, TensorSpec


def _pb():
    import triton_python_backend_utils as pb_utils  # provided by the python backend stub

    return pb_utils


def _pipeline_spec(model_dir: Path) -> dict:
    return json.loads((Path(model_dir).parent / "edgepose" / "pipeline.json").read_text())


class _Model:
    """Shared request loop: each request gets outputs or an error response, never a crash."""

    def initialize(self, args):
        self.pb = _pb()
        self.config = json.loads(args["model_config"])
        self.name = self.config["name"]
        self.dir = Path(args["model_repository"])
        self.setup(args)

    def setup(self, args):
        pass

    def execute(self, requests):
        return [self._respond(request) for request in requests]

    def _inputs(self, request) -> dict:
        return {spec["name"]: self.pb.get_input_tensor_by_name(request, spec["name"]).as_numpy()
                for spec in self.config["input"]}

    def _respond(self, request):
        try:
            outputs = self.run(self._inputs(request))
        except Exception as exc:  # a bad request gets an error response; the model stays up
            return self._error(exc)
        return self._response(outputs)

    def _response(self, outputs: dict):
        tensors = [self.pb.Tensor(k, np.ascontiguousarray(v)) for k, v in outputs.items()]
        return self.pb.InferenceResponse(output_tensors=tensors)

    def _error(self, exc):
        return self.pb.InferenceResponse(error=self.pb.TritonError(f"{self.name}: {exc}"))


class OnnxModel(_Model):
    """onnxruntime on ``1/model.onnx``; batched requests are concatenated into one call."""

    def setup(self, args):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = self.dir / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.output_names = [o["name"] for o in self.config["output"]]
        self.batching = int(self.config.get("max_batch_size", 0)) > 0

    def run(self, feed: dict) -> dict:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def execute(self, requests):
        if not self.batching or len(requests) == 1:
            return super().execute(requests)
        try:
            feeds = [self._inputs(r) for r in requests]
            sizes = [int(next(iter(f.values())).shape[0]) for f in feeds]
            outputs = self.run({k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]})
        except Exception as exc:  # the whole execution failed: every request hears why
            return [self._error(exc) for _ in requests]
        bounds = np.cumsum([0] + sizes)
        return [self._response({k: v[a:b] for k, v in outputs.items()}) for a, b in zip(bounds[:-1], bounds[1:])]


class _BLSRunner(Runner):
    """A :class:`Runner` whose ``infer`` is a BLS call to another model of the repository."""

    backend = "triton-bls"

    def __init__(self, name, inputs, outputs, meta, call, max_batch=None):
        self.name = name
        self.inputs = [TensorSpec(i["name"], tuple(i["shape"]), np.dtype(i["dtype"])) for i in inputs]
        self.outputs = [TensorSpec(o["name"], tuple(o["shape"]), np.dtype(o["dtype"])) for o in outputs]
        self.output_names = [o.name for o in self.outputs]
        self.meta = meta
        self.max_batch = max_batch
        self._call = call

    def _infer(self, feed):
        return self._call(self.name, feed, self.output_names)


def build_pipeline(spec: dict, call=None):
    """The edgepose :class:`Pipeline` over BLS runners for ``det`` and ``pose``."""
    from edgepose.metadata import ModelMeta
    from edgepose.pipeline.pipeline import Pipeline

    det = _BLSRunner("det", spec["det_inputs"], spec["det_outputs"],
                     ModelMeta.from_json(json.dumps(spec["det_meta"])), call)
    pose = _BLSRunner("pose", spec["pose_inputs"], spec["pose_outputs"],
                      ModelMeta.from_json(json.dumps(spec["pose_meta"])), call, spec["pose_max_batch"])
    return Pipeline(det, pose, score_threshold=spec["score_threshold"], max_persons=spec["max_persons"])


class CropModel(_Model):
    def setup(self, args):
        from edgepose.metadata import ModelMeta

        spec = _pipeline_spec(self.dir)
        self.meta = ModelMeta.from_json(json.dumps(spec["pose_meta"]))
        self.dtype = np.dtype(spec["pose_inputs"][0]["dtype"])

    def run(self, feed):
        from edgepose.pipeline.preprocess import crop_people

        crops, crop_boxes = crop_people(feed["IMAGE"], feed["BOXES"], self.meta)
        return {"CROPS": crops.astype(self.dtype, copy=False), "CROP_BOXES": crop_boxes}


class DecodeModel(_Model):
    def setup(self, args):
        self.pipe = build_pipeline(_pipeline_spec(self.dir))

    def run(self, feed):
        crop_boxes = feed.pop("CROP_BOXES")
        from edgepose.pipeline.detector import as_float32

        coords, joint_scores = self.pipe.pose_estimator.decode(as_float32(feed), crop_boxes)
        keypoints = np.concatenate([coords, joint_scores.reshape(coords.shape[0], coords.shape[1], 1)], axis=2)
        return {"KEYPOINTS": keypoints.astype(np.float32)}


class EntryModel(_Model):
    def setup(self, args):
        self.pipe = build_pipeline(_pipeline_spec(self.dir), self._bls)
        self.num_joints = self.pipe.num_joints

    def _bls(self, model, feed, output_names):
        pb = self.pb
        request = pb.InferenceRequest(model_name=model, requested_output_names=list(output_names),
                                      inputs=[pb.Tensor(k, np.ascontiguousarray(v)) for k, v in feed.items()])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return {n: pb.get_output_tensor_by_name(response, n).as_numpy() for n in output_names}

    def run(self, feed):
        from edgepose.pipeline.pipeline import check_frame

        pipe = self.pipe
        frame = check_frame(feed["IMAGE"])
        boxes, box_scores = pipe.detect(frame)
        if len(boxes) == 0:
            return {"BOXES": np.zeros((0, 4), np.float32), "BOX_SCORES": np.zeros((0,), np.float32),
                    "KEYPOINTS": np.zeros((0, self.num_joints, 3), np.float32)}
        crops = self._bls("crop", {"IMAGE": frame, "BOXES": boxes.astype(np.float32)}, ["CROPS", "CROP_BOXES"])
        pose_out = pipe.pose_estimator.run_batch(crops["CROPS"])
        keypoints = self._bls("decode", {**pose_out, "CROP_BOXES": crops["CROP_BOXES"]}, ["KEYPOINTS"])
        return {"BOXES": boxes.astype(np.float32), "BOX_SCORES": box_scores.astype(np.float32),
                "KEYPOINTS": keypoints["KEYPOINTS"]}
