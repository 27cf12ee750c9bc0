// edgepose corner pooling: exact cumulative max along H (top/bottom) or W (left/right).
//
// Along H: one thread per (n, c, column) scans the rows; neighbouring threads read
// neighbouring columns, so every row step is a coalesced load/store.
// Along W: one warp per (n, c, row); the row is processed in chunks of 32 columns, each chunk
// with a warp-wide inclusive max-scan (__shfl) plus the carry of the previous chunks.
// Max is exact in any precision, so the result equals the reference bit for bit.
#include "cornerPool/cornerPoolKernel.h"

#include <cuda_fp16.h>

namespace edgepose
{
namespace
{

template <typename T>
__device__ __forceinline__ float toFloat(T v);
template <>
__device__ __forceinline__ float toFloat<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ float toFloat<__half>(__half v)
{
    return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T pickMax(T a, T b)
{
    // NaN-propagating like torch.cummax: a NaN anywhere before wins.
    float fa = toFloat(a), fb = toFloat(b);
    return (fa != fa || fa >= fb) ? a : b;
}

template <typename T>
__global__ void poolAlongH(T const* __restrict__ in, T* __restrict__ out, int32_t nc, int32_t h, int32_t w,
    bool reverse)
{
    int64_t const total = static_cast<int64_t>(nc) * w;
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const plane = t / w;
        int32_t const col = static_cast<int32_t>(t - plane * w);
        T const* src = in + plane * h * w + col;
        T* dst = out + plane * h * w + col;
        if (reverse)
        {
            T acc = src[static_cast<int64_t>(h - 1) * w];
            for (int32_t y = h - 1; y >= 0; --y)
            {
                acc = pickMax(acc, src[static_cast<int64_t>(y) * w]);
                dst[static_cast<int64_t>(y) * w] = acc;
            }
        }
        else
        {
            T acc = src[0];
            for (int32_t y = 0; y < h; ++y)
            {
                acc = pickMax(acc, src[static_cast<int64_t>(y) * w]);
                dst[static_cast<int64_t>(y) * w] = acc;
            }
        }
    }
}

constexpr int32_t kWARP = 32;
constexpr int32_t kWARPS_PER_BLOCK = 8;

template <typename T>
__global__ void poolAlongW(T const* __restrict__ in, T* __restrict__ out, int64_t rows, int32_t w, bool reverse)
{
    int32_t const lane = threadIdx.x % kWARP;
    int64_t const warpId = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWARP;
    int64_t const nWarps = static_cast<int64_t>(gridDim.x) * blockDim.x / kWARP;
    for (int64_t row = warpId; row < rows; row += nWarps)
    {
        T const* src = in + row * w;
        T* dst = out + row * w;
        bool haveCarry = false;
        T carry = src[reverse ? w - 1 : 0];
        for (int32_t base = 0; base < w; base += kWARP)
        {
            // position along the scan direction -> column
            int32_t const step = base + lane;
            bool const valid = step < w;
            int32_t const col = reverse ? (w - 1 - step) : step;
            T v = valid ? src[col] : carry;
            // inclusive max-scan over lanes (lane i sees lanes 0..i)
            for (int32_t off = 1; off < kWARP; off <<= 1)
            {
                T other = __shfl_up_sync(0xffffffffu, v, off);
                if (lane >= off)
                {
                    v = pickMax(other, v);
                }
            }
            if (haveCarry)
            {
                v = pickMax(carry, v);
            }
            if (valid)
            {
                dst[col] = v;
            }
            carry = __shfl_sync(0xffffffffu, v, kWARP - 1);
            haveCarry = true;
        }
    }
}

int32_t blocksFor(int64_t work, int32_t threads)
{
    int64_t blocks = (work + threads - 1) / threads;
    if (blocks > 65535LL * 8)
    {
        blocks = 65535LL * 8; // grid-stride loops cover the rest
    }
    return static_cast<int32_t>(blocks < 1 ? 1 : blocks);
}

} // namespace

template <typename T>
cudaError_t cornerPoolImpl(cudaStream_t stream, T const* input, T* output, int32_t n, int32_t c, int32_t h,
    int32_t w, CornerPoolMode mode)
{
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
    {
        return cudaSuccess;
    }
    int32_t const nc = n * c;
    if (mode == CornerPoolMode::kTOP || mode == CornerPoolMode::kBOTTOM)
    {
        constexpr int32_t threads = 256;
        poolAlongH<T><<<blocksFor(static_cast<int64_t>(nc) * w, threads), threads, 0, stream>>>(
            input, output, nc, h, w, mode == CornerPoolMode::kTOP);
    }
    else if (mode == CornerPoolMode::kLEFT || mode == CornerPoolMode::kRIGHT)
    {
        constexpr int32_t threads = kWARP * kWARPS_PER_BLOCK;
        int64_t const rows = static_cast<int64_t>(nc) * h;
        poolAlongW<T><<<blocksFor(rows * kWARP, threads), threads, 0, stream>>>(
            input, output, rows, w, mode == CornerPoolMode::kLEFT);
    }
    else
    {
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

template cudaError_t cornerPoolImpl<float>(
    cudaStream_t, float const*, float*, int32_t, int32_t, int32_t, int32_t, CornerPoolMode);
template cudaError_t cornerPoolImpl<__half>(
    cudaStream_t, __half const*, __half*, int32_t, int32_t, int32_t, int32_t, CornerPoolMode);

} // namespace edgepose
