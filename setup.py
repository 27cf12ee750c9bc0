"""edgepose: deploy CenterNet / CornerNet-Squeeze detectors and AlphaPose SPPE pose
estimators on NVIDIA GPUs (TensorRT, Jetson first), verified on ONNX Runtime."""
from setuptools import find_packages, setup

setup(
    name="edgepose",
    version="0.1.0",
    description="Two-stage person detection + pose estimation, from PyTorch checkpoints "
    "to FP16/INT8 TensorRT engines and an ONNX Runtime reference runtime.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["edgepose", "edgepose.*"]),
    package_data={"edgepose": ["models/weights/*.pth", "models/signatures.json"]},
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "click>=8.1",
        "tqdm>=4.66",
        "packaging>=23",
    ],
    extras_require={
        # conversion (export, training, calibration) needs PyTorch; onnxsim simplifies graphs
        "torch": ["torch>=2.1", "onnxsim>=0.4.36"],
        # evaluation and benchmark plots
        "eval": ["pycocotools>=2.0.7", "matplotlib>=3.7"],
        # TensorRT backend (JetPack ships tensorrt as a system package; see docs/tensorrt.md).
        # TensorRT 10.3-11.x exists for CUDA 12 and for CUDA 13 (11.x too): pick the one matching
        # the driver with trt-cu12 / trt-cu13; cuda-python must have the same major version.
        "trt": ["tensorrt>=10.3,<12", "cuda-python>=12.2"],
        "trt-cu12": ["tensorrt-cu12>=10.3,<12", "cuda-python>=12.2,<13"],
        "trt-cu13": ["tensorrt-cu13>=10.13,<12", "cuda-python>=13,<14"],
        # JetPack 6 ships TensorRT 10.3 as a system package: only cuda-python comes from PyPI
        "jetson": ["cuda-python>=12.2,<13"],
        # client of Triton Inference Server (`edgepose run --triton`, tests); the server itself
        # comes from the NGC image or, for CPU trials, `make triton` (nvidia-pytriton, --no-deps)
        "triton": ["tritonclient[http,grpc]>=2.41,<3"],
        # structured pruning (`edgepose prune`); torch-pruning needs only torch>=2.0 and numpy
        "prune": ["torch-pruning==1.6.1"],
        "dev": ["pytest>=7.4", "pycocotools>=2.0.7", "matplotlib>=3.7", "onnxsim>=0.4.36"],
    },
    entry_points={"console_scripts": ["edgepose=edgepose.cli:main"]},
)
