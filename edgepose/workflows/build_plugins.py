"""``edgepose build`` of a model exported with TensorRT plugin nodes (``export --plugins on``).

The build runs every model on ONNX Runtime (calibration statistics, agreement with FP32 on
held-out images, AP and latency), which has no plugin kernels.  :class:`OrtCopies` keeps, per
role, the graph the build works on: the input itself when it has no plugin node, else a copy
with every plugin node replaced by its exact standard-op decomposition
(:func:`edgepose.ops.plugin_graph.decompose_plugin_nodes`, the subgraph ``--plugins off``
exports).  The FP16 / INT8 graph is built from that copy under a work folder;
:meth:`OrtCopies.restore` then writes the file for TensorRT with the plugin nodes put back in
place of their decompositions (FP16: the plugin reads and writes FP16, as the converter typed
the decomposition; INT8: the plugin stays float between the same Q/DQ nodes as the
decomposition had, and the written file must pass the Q/DQ lint).  Every range and Q/DQ scale
was found on the copy, whose tensors outside the decompositions have the plugin graph's names.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("edgepose")

ORT_COPY_NOTE = ("each plugin node replaced by its exact standard-op decomposition (the graph `--plugins off` "
                 "exports) for calibration, agreement and timing on ONNX Runtime; the written file keeps the "
                 "plugin nodes")


class OrtCopies:
    """Per role: the FP32 graph and the output the build uses on ONNX Runtime (``src``, ``outs``),
    and the plugin nodes to put back (``sites``); roles without plugin nodes use the real files."""

    def __init__(self, src: dict, outs: dict, work):
        import onnx

        from edgepose.ops.plugin_graph import decompose_plugin_nodes
        from edgepose.plugins import required_plugins

        self.src, self.outs, self.final, self.sites = dict(src), dict(outs), dict(outs), {}
        for role, path in src.items():
            if not required_plugins(path):
                continue
            model, sites = decompose_plugin_nodes(path)
            folder = Path(work) / f"ort_{role}"  # same file names as the user's: messages name their files
            folder.mkdir(parents=True, exist_ok=True)
            copy = folder / Path(path).name
            onnx.save(model, str(copy))
            self.src[role], self.outs[role], self.sites[role] = copy, folder / Path(outs[role]).name, sites
            log.info("edgepose build: %s has %d plugin node(s); ONNX Runtime runs %s", Path(path).name, len(sites),
                     copy.name)

    def restore(self, report: dict, precision: str):
        """Write each final output with its plugin nodes back (INT8: lint clean or
        QuantizationError) and note it in ``report["models"][role]["plugin_nodes"]``."""
        import onnx

        from edgepose.io_utils import atomic_path
        from edgepose.ops.plugin_graph import restore_plugin_nodes

        for role, sites in self.sites.items():
            entry = report["models"].setdefault(role, {})
            model = restore_plugin_nodes(self.outs[role], sites)
            if precision == "int8":
                from edgepose.quant.lint import check_qdq

                check_qdq(model, allow_float=set(entry.get("fp32_nodes", ())), what=f"INT8 {role} graph with "
                          "its plugin nodes")
            with atomic_path(self.final[role]) as tmp:
                onnx.save(model, str(tmp))
            ops = sorted({s.node.op_type for s in sites})
            entry["plugin_nodes"] = {"ops": ops, "count": len(sites), "ort_copy": ORT_COPY_NOTE}
