"""`edgepose export-triton`: resolve the two models, write the Triton model repository."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExportTritonRequest:
    out: str
    det: str | None = None       # None: the built-in default models (trained on synthetic people)
    pose: str | None = None
    backend: str = "python"
    max_batch: int = 8
    instances: int = 4
    score_threshold: float = 0.3
    max_persons: int = 20
    queue_delay_us: int = 2000
    force: bool = False
    device: str | None = None    # det/pose instances: None = GPU for onnxruntime/tensorrt, CPU for python


@dataclass
class ExportTritonResult:
    path: str
    backend: str
    models: list
    det: str
    pose: str
    pose_max_batch: int
    defaults: bool
    todo: str | None = None

    def format(self) -> str:
        lines = [f"wrote Triton model repository {self.path} ({self.backend} backend): {', '.join(self.models)}",
                 f"  det  {self.det}", f"  pose {self.pose} (dynamic batching, max batch {self.pose_max_batch})"]
        if self.defaults:
            lines.append("  (built-in default models, trained on synthetic people only)")
        if self.todo:
            lines.append(f"next: {self.todo}")
        lines.append(f"serve it: edgepose serve {self.path}")
        return "\n".join(lines)


def export_triton(req: ExportTritonRequest) -> ExportTritonResult:
    from edgepose.errors import UsageError
    from edgepose.serving.repository import write_repository

    if (req.det is None) != (req.pose is None):
        raise UsageError("pass both --det and --pose, or neither to use the built-in models")
    det, pose, defaults = req.det, req.pose, req.det is None
    if defaults:
        from edgepose.models.defaults import default_model_paths

        det, pose = (str(p) for p in default_model_paths())
    info = write_repository(det, pose, req.out, backend=req.backend, max_batch=req.max_batch,
                            instances=req.instances, score_threshold=req.score_threshold,
                            max_persons=req.max_persons, queue_delay_us=req.queue_delay_us, force=req.force,
                            device=req.device)
    return ExportTritonResult(info.path, info.backend, info.models, str(det), str(pose), info.pose_max_batch,
                              defaults, info.todo)
