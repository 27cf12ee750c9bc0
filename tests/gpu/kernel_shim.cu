// Test-only C entry points over the plugin kernels (no TensorRT), loaded with ctypes by
// tests/gpu/test_kernels.py. Pointers are raw device addresses (torch.Tensor.data_ptr()).
#include "cornerPool/cornerPoolKernel.h"
#include "heatmapTopK/heatmapTopKKernel.h"

#include <cuda_fp16.h>
#include <cstdint>

using edgepose::CornerPoolMode;

extern "C"
{

// dtype: 0 = float32, 1 = float16. Returns a cudaError_t (0 = success).
int ep_corner_pool(int dtype, uintptr_t in, uintptr_t out, int n, int c, int h, int w, int mode, uintptr_t stream)
{
    auto s = reinterpret_cast<cudaStream_t>(stream);
    auto m = static_cast<CornerPoolMode>(mode);
    if (dtype == 0)
    {
        return edgepose::cornerPoolImpl<float>(
            s, reinterpret_cast<float const*>(in), reinterpret_cast<float*>(out), n, c, h, w, m);
    }
    return edgepose::cornerPoolImpl<__half>(
        s, reinterpret_cast<__half const*>(in), reinterpret_cast<__half*>(out), n, c, h, w, m);
}

size_t ep_heatmap_topk_workspace(int n, int c, int h, int w, int k)
{
    return edgepose::heatmapTopKWorkspaceSize(n, c, h, w, k);
}

int ep_heatmap_topk(int dtype, uintptr_t hm, uintptr_t wh, uintptr_t reg, int n, int c, int h, int w, int k,
    int applySigmoid, int stride, uintptr_t boxes, uintptr_t scores, uintptr_t classes, uintptr_t workspace,
    size_t workspaceSize, uintptr_t stream)
{
    auto s = reinterpret_cast<cudaStream_t>(stream);
    if (dtype == 0)
    {
        return edgepose::heatmapTopKImpl<float>(s, reinterpret_cast<float const*>(hm),
            reinterpret_cast<float const*>(wh), reinterpret_cast<float const*>(reg), n, c, h, w, k, applySigmoid != 0,
            stride, reinterpret_cast<float*>(boxes), reinterpret_cast<float*>(scores),
            reinterpret_cast<int32_t*>(classes), reinterpret_cast<void*>(workspace), workspaceSize);
    }
    return edgepose::heatmapTopKImpl<__half>(s, reinterpret_cast<__half const*>(hm),
        reinterpret_cast<__half const*>(wh), reinterpret_cast<__half const*>(reg), n, c, h, w, k, applySigmoid != 0,
        stride, reinterpret_cast<__half*>(boxes), reinterpret_cast<__half*>(scores),
        reinterpret_cast<int32_t*>(classes), reinterpret_cast<void*>(workspace), workspaceSize);
}

} // extern "C"
