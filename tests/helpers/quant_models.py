"""Slim random-weight zoo models (CenterNet ResNet-18 64x64, SimplePose ResNet-18 64x48) with
randomised BatchNorm statistics, and an ONNX Runtime runner with common-subexpression
elimination off: the builders the FP16 / INT8 / build / prune / output tests share."""
from pathlib import Path

import numpy as np
import onnx


def randomise(model, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.8 + 0.6)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
        if isinstance(m, torch.nn.ConvTranspose2d):
            torch.nn.init.kaiming_normal_(m.weight, generator=g)
    return model.eval()


def make_tiny_models(out_dir) -> tuple:
    """(det.onnx, pose.onnx) in ``out_dir`` (exported once)."""
    out_dir = Path(out_dir)
    det_path, pose_path = out_dir / "det.onnx", out_dir / "pose.onnx"
    if det_path.is_file() and pose_path.is_file():
        return det_path, pose_path
    import torch

    from edgepose.export import torch2onnx
    from edgepose.models import get_spec
    from edgepose.models.alphapose import simplepose
    from edgepose.models.centernet_resnet import centernet_resnet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    det = randomise(centernet_resnet(18, widths=(8, 16, 32, 64), num_classes=1, head_conv=16,
                                     deconv_planes=(32, 16, 16)), 1)
    with torch.no_grad():  # box sizes of a few output pixels, so the FP32 detector yields real crops
        for head, bias in (("wh", 3.0), ("reg", 0.3)):
            torch.nn.init.normal_(getattr(det, head)[0].weight, std=0.1)
            torch.nn.init.normal_(getattr(det, head)[-1].weight, std=0.05)
            torch.nn.init.constant_(getattr(det, head)[-1].bias, bias)
    meta = get_spec("centernet_res18").meta(num_classes=1).replace(model="tiny_det")
    torch2onnx(det, det_path, input_size=(64, 64), meta=meta)
    pose = randomise(simplepose(18, 17, deconv_filters=(16, 16, 16), widths=(8, 16, 32, 64)), 2)
    meta = get_spec("simplepose_res50").meta().replace(model="tiny_pose")
    torch2onnx(pose, pose_path, input_size=(64, 48), meta=meta)
    return det_path, pose_path


def run_onnx(model, feeds):
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["CommonSubexpressionElimination"])
    names = [o.name for o in sess.get_outputs()]
    outs = [sess.run(names, f) for f in feeds]
    return {n: np.concatenate([o[i] for o in outs]) for i, n in enumerate(names)}
