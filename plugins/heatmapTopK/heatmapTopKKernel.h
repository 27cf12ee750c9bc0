// edgepose HeatmapTopK kernel: fused CenterNet decode (sigmoid, 3x3 peak test, top-K, gathers).
// No TensorRT headers: raw pointers + cudaStream_t, usable from the plugin and from tests.
#ifndef EDGEPOSE_HEATMAP_TOPK_KERNEL_H
#define EDGEPOSE_HEATMAP_TOPK_KERNEL_H

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace edgepose
{

//! Largest K: the K candidates are sorted in shared memory (8 bytes each, 32 KiB at 4096).
constexpr int32_t kHEATMAP_TOPK_MAX_K = 4096;

//! Bytes of device workspace heatmapTopKImpl needs for these sizes (256-byte aligned pieces).
size_t heatmapTopKWorkspaceSize(int32_t n, int32_t c, int32_t h, int32_t w, int32_t k);

//! CenterNet ctdet decode, official semantics (see plugins/heatmapTopK/README.md):
//!   heat = applySigmoid ? sigmoid(hm) : hm      (rounded to T, as a T network computes it)
//!   score = heat where heat >= all 3x3 neighbours (equal maxima all survive), else 0
//!   top-K over C*H*W per image, descending score, ties ordered by flat index
//!   class = idx / (H*W); y = (idx % (H*W)) / W; x = idx % W
//!   box = ((x + reg0 - w/2), (y + reg1 - h/2), (x + reg0 + w/2), (y + reg1 + h/2)) * stride
//! Inputs hm [n,c,h,w], wh [n,2,h,w], reg [n,2,h,w] (linear NCHW, T = float or __half).
//! Outputs boxes [n,k,4] (T), scores [n,k] (T), classes [n,k] (int32). When k > c*h*w the rows
//! past c*h*w are zero with class -1. Which of several elements tied exactly at the K-th score
//! is taken is unspecified (as in the official code). 1 <= k <= kHEATMAP_TOPK_MAX_K.
//! `workspace` must hold heatmapTopKWorkspaceSize(n, c, h, w, k) bytes.
template <typename T>
cudaError_t heatmapTopKImpl(cudaStream_t stream, T const* hm, T const* wh, T const* reg, int32_t n, int32_t c,
    int32_t h, int32_t w, int32_t k, bool applySigmoid, int32_t stride, T* boxes, T* scores, int32_t* classes,
    void* workspace, size_t workspaceSize);

} // namespace edgepose

#endif // EDGEPOSE_HEATMAP_TOPK_KERNEL_H
