// edgepose corner pooling kernel (CornerNet TopPool/BottomPool/LeftPool/RightPool).
// No TensorRT headers: raw pointers + cudaStream_t, usable from the plugin and from tests.
#ifndef EDGEPOSE_CORNER_POOL_KERNEL_H
#define EDGEPOSE_CORNER_POOL_KERNEL_H

#include <cstdint>
#include <cuda_runtime_api.h>

namespace edgepose
{

//! Pool direction; values equal the ONNX attribute `mode`.
//!   kTOP    (0): y[n,c,h,w] = max(x[n,c,h..H-1,w])  (reverse cumulative max along H)
//!   kBOTTOM (1): y[n,c,h,w] = max(x[n,c,0..h,w])    (forward cumulative max along H)
//!   kLEFT   (2): y[n,c,h,w] = max(x[n,c,h,w..W-1])  (reverse cumulative max along W)
//!   kRIGHT  (3): y[n,c,h,w] = max(x[n,c,h,0..w])    (forward cumulative max along W)
enum class CornerPoolMode : int32_t
{
    kTOP = 0,
    kBOTTOM = 1,
    kLEFT = 2,
    kRIGHT = 3
};

//! Exact cumulative max over an NCHW tensor (linear layout). T = float or __half.
//! `input` and `output` may not alias. Returns the launch status (cudaGetLastError()).
template <typename T>
cudaError_t cornerPoolImpl(cudaStream_t stream, T const* input, T* output, int32_t n, int32_t c, int32_t h,
    int32_t w, CornerPoolMode mode);

} // namespace edgepose

#endif // EDGEPOSE_CORNER_POOL_KERNEL_H
