"""ORT CPU FP32 / FP16 / INT8 latency of real-size zoo models (RANDOM weights), interleaved.

    python benchmarks/int8_models.py     # centernet_res18 512x512 (batch 1) + fastpose_res50 256x192 (batch 8)
    python benchmarks/int8_models.py --rounds 5 --models fastpose_res50 --pose-batch 8
    python benchmarks/int8_models.py --det-batch 1,8 --before OLD_OUT   # + the INT8 files an older
                                                                        # edgepose built (int8_before)

The models are the zoo architectures at their real input sizes with random weights, BatchNorm
statistics re-estimated on synthetic people images and heads rescaled (see
``benchmarks/real_size_models.py``): right for speed and INT8-vs-FP32 agreement, meaningless for
accuracy.  INT8 is built exactly as ``edgepose build --int8 --cpu-rewrite`` builds it
(prepare_fp32 + calibration + quantize_int8, the image-reading stem kept float) and linted
against TensorRT's Q/DQ rules.

Per model it prints the median latency of each precision (sessions timed round-robin, so load
from other processes hits all alike), the speedup over FP32 in wall time and in process CPU
time (worker threads not spinning; steadier on a shared machine), what ORT's optimiser left in the
INT8 graph (QLinearConv, QLinearAdd, float Conv, float Relu, DequantizeLinear->QuantizeLinear
pairs, Transposes) and the fraction of the CPU's INT8 peak reached:

    fraction = 2 * MACs / INT8 latency / INT8 peak

(also from process CPU time / threads: what the work would take on idle cores) with MACs
counted from the FP32 graph's Conv/ConvTranspose/Gemm/MatMul shapes (real products only) and the INT8 peak measured on
this machine with a big ``MatMulInteger`` (u8 x s8 -> int32, MLAS's VNNI/AVX2 kernel, the one
QLinearConv uses) of 1024x1024x1024 on the same threads; the FP32 peak likewise with ``MatMul``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_size_models import export_realistic, sample_inputs  # noqa: E402

ROLES = {"centernet_res18": "det", "fastpose_res50": "pose"}


def _session(path, threads):
    from edgepose.ort_session import create_session

    return create_session(path, threads=threads, disable_cse=True)


def matmul_peak_gops(threads: int, n: int = 1024, runs: int = 5) -> dict:
    """GOP/s (2 ops per multiply-add) of an n^3 MatMul (fp32) and MatMulInteger (u8 x s8) on ORT."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    peaks = {}
    for kind, a_type, y_type, b in (
            ("fp32", TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((n, n)).astype(np.float32)),
            ("int8", TensorProto.UINT8, TensorProto.INT32, rng.integers(-128, 127, (n, n), dtype=np.int8))):
        op = "MatMul" if kind == "fp32" else "MatMulInteger"
        graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "peak",
                                  [helper.make_tensor_value_info("a", a_type, [n, n])],
                                  [helper.make_tensor_value_info("y", y_type, [n, n])],
                                  [numpy_helper.from_array(b, "b")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        a = (rng.standard_normal((n, n)).astype(np.float32) if kind == "fp32"
             else rng.integers(0, 255, (n, n), dtype=np.uint8))
        session = _session(model, threads)
        session.run(None, {"a": a})
        best = min(_timed(session, {"a": a}) for _ in range(runs))
        peaks[kind] = 2 * n ** 3 / best / 1e9
    return peaks


def _timed(session, feed) -> float:
    t0 = time.perf_counter()
    session.run(None, feed)
    return time.perf_counter() - t0


def count_macs(model_path) -> int:
    """Multiply-adds of the Conv/ConvTranspose/Gemm/MatMul nodes (shapes from ONNX shape
    inference; a ConvTranspose counts its real products, not the zero taps of a rewrite)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(model.graph.value_info) + list(model.graph.output)}
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    for vi in model.graph.input:
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    macs = 0
    for node in model.graph.node:
        if node.op_type == "ConvTranspose" and node.input[1] in weights:
            x = shapes.get(node.input[0])  # every input pixel meets every weight of its group once
            if x and 0 not in x:
                macs += int(np.prod(x)) * int(np.prod(weights[node.input[1]][1:]))
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.input[1] in weights:
            out = shapes.get(node.output[0])
            w = weights[node.input[1]]
            if not out or 0 in out:
                continue
            per_output = int(np.prod(w[1:])) if node.op_type == "Conv" else int(w[0])
            macs += int(np.prod(out)) * per_output
    return macs


def build_variants(name: str, out: Path, batch: int, calib: int, threads: int, compare: bool = False,
                   before: Path | None = None) -> dict:
    """{precision: path} for FP32 (the export), FP16 and INT8 (as `build --int8 --cpu-rewrite`)."""
    from edgepose.quant import calibration as C
    from edgepose.quant.fp16 import convert_fp16
    from edgepose.quant.int8 import cpu_float_nodes, prepare_fp32, quantize_int8

    fp32 = export_realistic(name, out / f"{name}.b{batch}.fp32.onnx", batch=batch)
    paths = {"fp32": fp32, "fp16": out / f"{name}.b{batch}.fp16.onnx", "int8": out / f"{name}.b{batch}.int8.onnx"}
    if not paths["fp16"].is_file():
        convert_fp16(str(fp32), paths["fp16"])
    prepared, _ = prepare_fp32(fp32, cpu_rewrite=True)
    images = sample_inputs(name, max(calib, batch), seed=500)
    name_in = prepared.graph.input[0].name
    feeds = [{name_in: images[i:i + batch]} for i in range(0, len(images) - batch + 1, batch)]
    stats = C.collect_statistics(prepared, feeds, progress=False, threads=threads)
    ranges = C.compute_ranges(stats, "entropy", full_range=C.head_tensors(prepared))
    keep = cpu_float_nodes(prepared)
    quantize_int8(prepared, ranges, paths["int8"], nodes_to_exclude=keep)  # linted inside
    if compare:  # the placement before edgepose.quant.placement
        paths["int8_before"] = out / f"{name}.b{batch}.int8_before.onnx"
        quantize_int8(prepared, ranges, paths["int8_before"], nodes_to_exclude=keep, improve_placement=False)
    if before is not None:  # the INT8 file an earlier edgepose built from the same export
        old = Path(before) / paths["int8"].name
        if not old.is_file():
            raise SystemExit(f"--before {before}: {old.name} is missing; build it with that version first")
        paths["int8_before"] = old
    return paths


def ort_graph_counts(path, threads: int) -> dict:
    """What ORT's optimiser (all levels, CSE off, as the INT8 runner) leaves in the graph."""
    import tempfile

    import onnx

    from edgepose.ort_session import create_session

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "opt.onnx"
        create_session(path, threads=threads, disable_cse=True, optimized_path=opt)
        graph = onnx.load(str(opt)).graph
    ops = Counter(n.op_type for n in graph.node)
    producer = {o: n.op_type for n in graph.node for o in n.output}
    dq_q = sum(n.op_type == "QuantizeLinear" and producer.get(n.input[0]) == "DequantizeLinear" for n in graph.node)
    return {"QLinearConv": ops["QLinearConv"], "QLinearAdd": ops["QLinearAdd"],
            "float_conv": ops["Conv"] + ops["FusedConv"] + ops["ConvTranspose"], "float_relu": ops["Relu"],
            "dq_q_pairs": dq_q, "Transpose": ops["Transpose"], "QuantizeLinear": ops["QuantizeLinear"],
            "DequantizeLinear": ops["DequantizeLinear"]}


def interleaved_ms(paths: dict, feed_fp32: np.ndarray, rounds: int, threads: int) -> dict:
    """``{"wall": {precision: median ms}, "cpu": {precision: median CPU ms}}``; each round runs
    every precision once.  Worker threads do not spin (``spinning=False``), so the process CPU
    time of a run is the work it did: on a shared machine that ratio is steadier than wall
    time, which other processes' load stretches unevenly."""
    from edgepose.ort_session import create_session

    sessions = {k: create_session(p, threads=threads, disable_cse=True, spinning=False) for k, p in paths.items()}
    feeds = {}
    for k, s in sessions.items():
        inp = s.get_inputs()[0]
        x = feed_fp32.astype(np.float16) if inp.type == "tensor(float16)" else feed_fp32
        feeds[k] = {inp.name: x}
        s.run(None, feeds[k])
    wall, cpu = {k: [] for k in sessions}, {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            c0, t0 = time.process_time(), time.perf_counter()
            s.run(None, feeds[k])
            wall[k].append((time.perf_counter() - t0) * 1000)
            cpu[k].append((time.process_time() - c0) * 1000)
    return {"wall": {k: float(np.median(v)) for k, v in wall.items()},
            "cpu": {k: float(np.median(v)) for k, v in cpu.items()}}


def _row(batch, paths, times, peak, threads) -> dict:
    macs = count_macs(paths["fp32"])
    ms, cpu = times["wall"], times["cpu"]
    fractions = {k: round(2 * macs / (v / 1000) / 1e9 / peak["int8" if k.startswith("int8") else "fp32"], 3)
                 for k, v in ms.items() if k != "fp16"}
    # the same from process CPU time spread over the threads: what the work would take on idle cores
    cpu_fractions = {k: round(2 * macs / (v / 1000 / threads) / 1e9 / peak["int8" if k.startswith("int8") else "fp32"], 3)
                     for k, v in cpu.items() if k != "fp16"}
    return {"batch": batch, "ms": {k: round(v, 2) for k, v in ms.items()}, "peak_fraction": fractions,
            "peak_fraction_cpu_time": cpu_fractions,
            "cpu_ms": {k: round(v, 2) for k, v in cpu.items()},
            "speedup_vs_fp32": {k: round(ms["fp32"] / v, 3) for k, v in ms.items()},
            "cpu_speedup_vs_fp32": {k: round(cpu["fp32"] / v, 3) for k, v in cpu.items()},
            "gmacs": round(macs / 1e9, 2),
            "int8_peak_fraction": round(2 * macs / (ms["int8"] / 1000) / 1e9 / peak["int8"], 3),
            "fp32_peak_fraction": round(2 * macs / (ms["fp32"] / 1000) / 1e9 / peak["fp32"], 3),
            "int8_ort_graph": ort_graph_counts(paths["int8"], threads),
            **({"int8_before_ort_graph": ort_graph_counts(paths["int8_before"], threads)} if "int8_before" in paths else {})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/int8_models", help="folder for the ONNX files and int8_models.json")
    ap.add_argument("--models", default="centernet_res18,fastpose_res50")
    ap.add_argument("--det-batch", default="1", help="detector batch sizes, comma-separated (e.g. 1,8)")
    ap.add_argument("--pose-batch", type=int, default=8)
    ap.add_argument("--calib", type=int, default=8, help="calibration inputs per model")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare-placement", action="store_true",
                    help="also time INT8 without the placement fixes of edgepose.quant.placement (int8_before)")
    ap.add_argument("--before", default=None,
                    help="folder with the INT8 files an earlier edgepose built for the same exports (this script's "
                         "--out of that version): timed interleaved as int8_before")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    peak = matmul_peak_gops(args.threads)
    report = {"weights": "random (BatchNorm re-estimated, heads rescaled): timing only",
              "threads": args.threads, "peak_gops": {k: round(v, 1) for k, v in peak.items()}, "models": {}}
    rows = {}
    runs = [(name, batch) for name in args.models.split(",")
            for batch in ([args.pose_batch] if ROLES.get(name) == "pose" else [int(b) for b in args.det_batch.split(",")])]
    for name, batch in runs:
        paths = build_variants(name, out, batch, args.calib, args.threads, args.compare_placement, args.before)
        ms = interleaved_ms(paths, sample_inputs(name, batch, seed=900), args.rounds, args.threads)
        rows[f"{name}.b{batch}"] = (batch, paths, ms)
        for kind, value in matmul_peak_gops(args.threads).items():  # best of several: load only lowers it
            peak[kind] = max(peak[kind], value)
    report["peak_gops"] = {k: round(v, 1) for k, v in peak.items()}
    print(f"peak (ORT 1024^3, {args.threads} threads, best of {len(rows) + 1} measurements): FP32 MatMul "
          f"{peak['fp32']:.0f} GFLOP/s, INT8 MatMulInteger {peak['int8']:.0f} GOP/s")
    for name, (batch, paths, times) in rows.items():
        report["models"][name] = row = _row(batch, paths, times, peak, args.threads)
        ms, speed, cpu_speed = times["wall"], row["speedup_vs_fp32"], row["cpu_speedup_vs_fp32"]
        before = (f" (before: {ms['int8_before']:.1f} ms, {speed['int8_before']:.2f}x; CPU time "
                  f"{cpu_speed['int8_before']:.2f}x; {row['peak_fraction']['int8_before'] * 100:.0f}% of INT8 peak)"
                  if "int8_before" in ms else "")
        print(f"{name} (random weights) batch {batch}: FP32 {ms['fp32']:.1f} ms, FP16 {ms['fp16']:.1f} ms, "
              f"INT8 {ms['int8']:.1f} ms -> INT8 {speed['int8']:.2f}x FP32 (CPU time {cpu_speed['int8']:.2f}x)"
              f"{before}; "
              f"{row['int8_peak_fraction'] * 100:.0f}% of INT8 peak, FP32 at {row['fp32_peak_fraction'] * 100:.0f}% "
              f"of FP32 peak (from CPU time: INT8 {row['peak_fraction_cpu_time']} of peak); "
              f"ORT INT8 graph {row['int8_ort_graph']}")
    (out / "int8_models.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
