// edgepose HeatmapTopK: fused sigmoid + 3x3 peak test + exact per-image top-K + gathers.
//
// Selection is an exact radix select on order-preserving 32-bit keys of the scores:
//   1. score pass (one thread per element): activation, peak test, key -> workspace, and a
//      histogram of the top key byte (shared-memory bins, then global atomics);
//   2. four times: pick the byte of the K-th largest key from the histogram (one thread per
//      image), then histogram the next byte of the keys that share the chosen prefix;
//   3. compaction: keys above the K-th key are appended (warp-aggregated atomics), keys equal
//      to it fill the remaining slots;
//   4. one block per image sorts the K candidates in shared memory (bitonic, key descending,
//      index ascending) and gathers reg/wh into boxes.
// About ten launches, each reading the scores once; no host synchronisation.
#include "heatmapTopK/heatmapTopKKernel.h"

#include <cuda_fp16.h>

namespace edgepose
{
namespace
{

constexpr int32_t kTHREADS = 256;
constexpr int32_t kBINS = 256;
constexpr int32_t kSORT_THREADS = 1024;
constexpr uint32_t kZERO_KEY = 0x80000000u; // toKey(+0.0f)

struct SelectState
{
    uint32_t prefix;     // bits of the K-th largest key found so far
    uint32_t remaining;  // how many keys equal to the prefix range still have to be taken
    uint32_t nGreater;   // compaction counter: keys > threshold
    uint32_t nEqual;     // compaction counter: keys == threshold
};

struct Workspace
{
    uint32_t* keys;       // [n, c*h*w]
    uint32_t* hist;       // [n, 256]
    SelectState* state;   // [n]
    uint32_t* candKey;    // [n, k]
    int32_t* candIdx;     // [n, k]
};

size_t alignUp(size_t v)
{
    return (v + 255) & ~static_cast<size_t>(255);
}

Workspace carve(void* base, int32_t n, int64_t chw, int32_t k, size_t* total)
{
    uintptr_t const p = reinterpret_cast<uintptr_t>(base); // may be 0 when only sizing
    Workspace ws{};
    size_t off = 0;
    // hist and state first and adjacent: one memset clears both
    ws.hist = reinterpret_cast<uint32_t*>(p + off);
    off += static_cast<size_t>(n) * kBINS * sizeof(uint32_t);
    ws.state = reinterpret_cast<SelectState*>(p + off);
    off = alignUp(off + static_cast<size_t>(n) * sizeof(SelectState));
    ws.keys = reinterpret_cast<uint32_t*>(p + off);
    off = alignUp(off + static_cast<size_t>(n) * chw * sizeof(uint32_t));
    ws.candKey = reinterpret_cast<uint32_t*>(p + off);
    off = alignUp(off + static_cast<size_t>(n) * k * sizeof(uint32_t));
    ws.candIdx = reinterpret_cast<int32_t*>(p + off);
    off = alignUp(off + static_cast<size_t>(n) * k * sizeof(int32_t));
    *total = off;
    return ws;
}

__device__ __forceinline__ uint32_t toKey(float f)
{
    uint32_t const u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float fromKey(uint32_t key)
{
    uint32_t const u = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    return __uint_as_float(u);
}

template <typename T>
__device__ __forceinline__ float load(T const* p, int64_t i);
template <>
__device__ __forceinline__ float load<float>(float const* p, int64_t i)
{
    return p[i];
}
template <>
__device__ __forceinline__ float load<__half>(__half const* p, int64_t i)
{
    return __half2float(p[i]);
}

template <typename T>
__device__ __forceinline__ T store(float v);
template <>
__device__ __forceinline__ float store<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ __half store<__half>(float v)
{
    return __float2half_rn(v);
}

template <typename T>
__device__ __forceinline__ float roundTo(float v)
{
    return v;
}
template <>
__device__ __forceinline__ float roundTo<__half>(float v)
{
    return __half2float(__float2half_rn(v));
}

//! Activation of one heatmap value, rounded to T like a T network computes it.
template <typename T>
__device__ __forceinline__ float act(T const* hm, int64_t i, bool applySigmoid)
{
    float v = load(hm, i);
    if (applySigmoid)
    {
        v = roundTo<T>(1.0f / (1.0f + expf(-v)));
    }
    return v;
}

__device__ __forceinline__ void flushHistogram(uint32_t* shared, uint32_t* global)
{
    __syncthreads();
    for (int32_t b = threadIdx.x; b < kBINS; b += blockDim.x)
    {
        if (shared[b] != 0)
        {
            atomicAdd(global + b, shared[b]);
        }
    }
}

template <typename T>
__global__ void scoreKernel(T const* __restrict__ hm, int32_t h, int32_t w, int64_t chw, bool applySigmoid,
    Workspace ws)
{
    __shared__ uint32_t bins[kBINS];
    for (int32_t b = threadIdx.x; b < kBINS; b += blockDim.x)
    {
        bins[b] = 0;
    }
    __syncthreads();
    int32_t const img = blockIdx.y;
    int64_t const hw = static_cast<int64_t>(h) * w;
    T const* map = hm + img * chw;
    uint32_t* keys = ws.keys + img * chw;
    uint32_t zeros = 0;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < chw;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int64_t const plane = e / hw;
        int32_t const sp = static_cast<int32_t>(e - plane * hw);
        int32_t const y = sp / w;
        int32_t const x = sp - y * w;
        float const s = act(map, e, applySigmoid);
        bool peak = true;
        for (int32_t dy = -1; dy <= 1 && peak; ++dy)
        {
            int32_t const yy = y + dy;
            if (yy < 0 || yy >= h)
            {
                continue;
            }
            for (int32_t dx = -1; dx <= 1; ++dx)
            {
                int32_t const xx = x + dx;
                if ((dx == 0 && dy == 0) || xx < 0 || xx >= w)
                {
                    continue;
                }
                if (act(map, plane * hw + static_cast<int64_t>(yy) * w + xx, applySigmoid) > s)
                {
                    peak = false;
                    break;
                }
            }
        }
        float score = peak ? s : 0.0f;
        if (score == 0.0f)
        {
            score = 0.0f; // -0 -> +0: one key for zero
        }
        uint32_t const key = toKey(score);
        keys[e] = key;
        if (key == kZERO_KEY)
        {
            ++zeros; // most elements are non-peaks: count them in a register, not in a contended bin
        }
        else
        {
            atomicAdd(&bins[key >> 24], 1u);
        }
    }
    if (zeros != 0)
    {
        atomicAdd(&bins[kZERO_KEY >> 24], zeros);
    }
    flushHistogram(bins, ws.hist + img * kBINS);
}

//! One thread per image: choose the byte of the K-th largest key at `pass`, clear the histogram.
__global__ void selectKernel(Workspace ws, int32_t n, int32_t k, int32_t pass)
{
    int32_t const img = blockIdx.x * blockDim.x + threadIdx.x;
    if (img >= n)
    {
        return;
    }
    SelectState& st = ws.state[img];
    uint32_t* hist = ws.hist + img * kBINS;
    uint32_t remaining = pass == 0 ? static_cast<uint32_t>(k) : st.remaining;
    uint32_t prefix = pass == 0 ? 0u : st.prefix;
    int32_t const shift = 24 - 8 * pass;
    uint32_t above = 0;
    int32_t chosen = 0;
    for (int32_t b = kBINS - 1; b >= 0; --b)
    {
        uint32_t const count = hist[b];
        if (above + count >= remaining)
        {
            chosen = b;
            break;
        }
        above += count;
    }
    for (int32_t b = 0; b < kBINS; ++b)
    {
        hist[b] = 0;
    }
    st.prefix = prefix | (static_cast<uint32_t>(chosen) << shift);
    st.remaining = remaining - above;
}

//! Histogram of byte `pass` of the keys whose higher bytes equal the chosen prefix.
__global__ void histKernel(int64_t chw, int32_t pass, Workspace ws)
{
    __shared__ uint32_t bins[kBINS];
    for (int32_t b = threadIdx.x; b < kBINS; b += blockDim.x)
    {
        bins[b] = 0;
    }
    __syncthreads();
    int32_t const img = blockIdx.y;
    uint32_t const* keys = ws.keys + img * chw;
    int32_t const high = 32 - 8 * pass; // bits already fixed are key >> high
    int32_t const shift = 24 - 8 * pass;
    uint32_t const want = ws.state[img].prefix >> high;
    uint32_t zeros = 0;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < chw;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        uint32_t const key = keys[e];
        if (key == kZERO_KEY)
        {
            zeros += (key >> high) == want ? 1u : 0u; // see scoreKernel: avoid one hot bin
        }
        else if ((key >> high) == want)
        {
            atomicAdd(&bins[(key >> shift) & 0xffu], 1u);
        }
    }
    if (zeros != 0)
    {
        atomicAdd(&bins[(kZERO_KEY >> shift) & 0xffu], zeros);
    }
    flushHistogram(bins, ws.hist + img * kBINS);
}

__device__ __forceinline__ uint32_t warpAppend(bool flag, uint32_t* counter)
{
    uint32_t const mask = __ballot_sync(0xffffffffu, flag);
    int32_t const lane = threadIdx.x & 31;
    uint32_t base = 0;
    if (mask != 0)
    {
        int32_t const leader = __ffs(mask) - 1;
        if (lane == leader)
        {
            base = atomicAdd(counter, static_cast<uint32_t>(__popc(mask)));
        }
        base = __shfl_sync(0xffffffffu, base, leader);
    }
    return base + __popc(mask & ((1u << lane) - 1u));
}

__global__ void compactKernel(int64_t chw, int32_t k, Workspace ws)
{
    int32_t const img = blockIdx.y;
    uint32_t const* keys = ws.keys + img * chw;
    SelectState* st = ws.state + img;
    uint32_t const threshold = st->prefix;
    uint32_t const takeEqual = st->remaining;
    uint32_t const nGreater = static_cast<uint32_t>(k) - takeEqual;
    uint32_t* candKey = ws.candKey + static_cast<int64_t>(img) * k;
    int32_t* candIdx = ws.candIdx + static_cast<int64_t>(img) * k;
    int64_t const stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    // every lane of a warp runs the same number of iterations (ballots need the full warp)
    int64_t const end = ((chw + stride - 1) / stride) * stride;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < end; e += stride)
    {
        uint32_t const key = e < chw ? keys[e] : 0u;
        bool const greater = e < chw && key > threshold;
        bool const equal = e < chw && key == threshold;
        uint32_t const g = warpAppend(greater, &st->nGreater);
        uint32_t const q = warpAppend(equal, &st->nEqual);
        if (greater && g < nGreater)
        {
            candKey[g] = key;
            candIdx[g] = static_cast<int32_t>(e);
        }
        if (equal && q < takeEqual)
        {
            candKey[nGreater + q] = key;
            candIdx[nGreater + q] = static_cast<int32_t>(e);
        }
    }
}

__device__ __forceinline__ bool before(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

template <typename T>
__global__ void sortGatherKernel(T const* __restrict__ wh, T const* __restrict__ reg, int32_t h, int32_t w,
    int64_t chw, int32_t kEff, int32_t k, int32_t sortSize, float stride, Workspace ws, T* __restrict__ boxes,
    T* __restrict__ scores, int32_t* __restrict__ classes)
{
    extern __shared__ uint32_t smem[];
    uint32_t* sKey = smem;
    int32_t* sIdx = reinterpret_cast<int32_t*>(smem + sortSize);
    int32_t const img = blockIdx.x;
    uint32_t const* candKey = ws.candKey + static_cast<int64_t>(img) * kEff;
    int32_t const* candIdx = ws.candIdx + static_cast<int64_t>(img) * kEff;
    for (int32_t i = threadIdx.x; i < sortSize; i += blockDim.x)
    {
        bool const valid = i < kEff;
        sKey[i] = valid ? candKey[i] : 0u;
        sIdx[i] = valid ? candIdx[i] : 0x7fffffff;
    }
    __syncthreads();
    // bitonic sort, "before" order
    for (int32_t size = 2; size <= sortSize; size <<= 1)
    {
        for (int32_t stridePos = size >> 1; stridePos > 0; stridePos >>= 1)
        {
            for (int32_t i = threadIdx.x; i < sortSize; i += blockDim.x)
            {
                int32_t const j = i ^ stridePos;
                if (j > i)
                {
                    bool const ascending = (i & size) == 0; // "ascending" = in `before` order
                    bool const swap = ascending ? before(sKey[j], sIdx[j], sKey[i], sIdx[i])
                                                : before(sKey[i], sIdx[i], sKey[j], sIdx[j]);
                    if (swap)
                    {
                        uint32_t const tk = sKey[i];
                        sKey[i] = sKey[j];
                        sKey[j] = tk;
                        int32_t const ti = sIdx[i];
                        sIdx[i] = sIdx[j];
                        sIdx[j] = ti;
                    }
                }
            }
            __syncthreads();
        }
    }
    int64_t const hw = static_cast<int64_t>(h) * w;
    T const* whImg = wh + static_cast<int64_t>(img) * 2 * hw;
    T const* regImg = reg + static_cast<int64_t>(img) * 2 * hw;
    for (int32_t i = threadIdx.x; i < k; i += blockDim.x)
    {
        int64_t const row = static_cast<int64_t>(img) * k + i;
        if (i >= kEff)
        {
            for (int32_t j = 0; j < 4; ++j)
            {
                boxes[row * 4 + j] = store<T>(0.0f);
            }
            scores[row] = store<T>(0.0f);
            classes[row] = -1;
            continue;
        }
        int64_t const e = sIdx[i];
        int32_t const cls = static_cast<int32_t>(e / hw);
        int32_t const sp = static_cast<int32_t>(e - cls * hw);
        int32_t const y = sp / w;
        int32_t const x = sp - y * w;
        float const cx = static_cast<float>(x) + load(regImg, sp);
        float const cy = static_cast<float>(y) + load(regImg, hw + sp);
        float const halfW = load(whImg, sp) / 2.0f;
        float const halfH = load(whImg, hw + sp) / 2.0f;
        boxes[row * 4 + 0] = store<T>((cx - halfW) * stride);
        boxes[row * 4 + 1] = store<T>((cy - halfH) * stride);
        boxes[row * 4 + 2] = store<T>((cx + halfW) * stride);
        boxes[row * 4 + 3] = store<T>((cy + halfH) * stride);
        scores[row] = store<T>(fromKey(sKey[i]));
        classes[row] = cls;
    }
}

int32_t gridX(int64_t work, int32_t n)
{
    int64_t blocks = (work + kTHREADS - 1) / kTHREADS;
    int64_t const cap = n >= 64 ? 64 : 1024 / n; // enough blocks to fill a GPU, grid-stride beyond
    if (blocks > cap)
    {
        blocks = cap;
    }
    return static_cast<int32_t>(blocks < 1 ? 1 : blocks);
}

} // namespace

size_t heatmapTopKWorkspaceSize(int32_t n, int32_t c, int32_t h, int32_t w, int32_t k)
{
    size_t total = 0;
    int64_t const chw = static_cast<int64_t>(c) * h * w;
    int32_t const kEff = static_cast<int32_t>(k < chw ? k : chw);
    carve(nullptr, n, chw, kEff, &total);
    return total;
}

template <typename T>
cudaError_t heatmapTopKImpl(cudaStream_t stream, T const* hm, T const* wh, T const* reg, int32_t n, int32_t c,
    int32_t h, int32_t w, int32_t k, bool applySigmoid, int32_t stride, T* boxes, T* scores, int32_t* classes,
    void* workspace, size_t workspaceSize)
{
    if (n <= 0 || k <= 0)
    {
        return cudaSuccess;
    }
    int64_t const chw = static_cast<int64_t>(c) * h * w;
    if (k > kHEATMAP_TOPK_MAX_K || chw <= 0 || chw > 0x7fffffffLL || n > 65535)
    {
        return cudaErrorInvalidValue;
    }
    int32_t const kEff = static_cast<int32_t>(k < chw ? k : chw);
    size_t needed = 0;
    Workspace const ws = carve(workspace, n, chw, kEff, &needed);
    if (workspace == nullptr || workspaceSize < needed)
    {
        return cudaErrorInvalidValue;
    }
    cudaError_t err = cudaMemsetAsync(ws.hist, 0,
        static_cast<size_t>(n) * (kBINS * sizeof(uint32_t) + sizeof(SelectState)), stream);
    if (err != cudaSuccess)
    {
        return err;
    }
    dim3 const grid(gridX(chw, n), n);
    int32_t const selBlocks = (n + 127) / 128;
    scoreKernel<T><<<grid, kTHREADS, 0, stream>>>(hm, h, w, chw, applySigmoid, ws);
    selectKernel<<<selBlocks, 128, 0, stream>>>(ws, n, kEff, 0);
    for (int32_t pass = 1; pass < 4; ++pass)
    {
        histKernel<<<grid, kTHREADS, 0, stream>>>(chw, pass, ws);
        selectKernel<<<selBlocks, 128, 0, stream>>>(ws, n, kEff, pass);
    }
    compactKernel<<<grid, kTHREADS, 0, stream>>>(chw, kEff, ws);
    int32_t sortSize = 1;
    while (sortSize < kEff)
    {
        sortSize <<= 1;
    }
    size_t const smem = static_cast<size_t>(sortSize) * (sizeof(uint32_t) + sizeof(int32_t));
    int32_t const threads = sortSize < kSORT_THREADS ? (sortSize < 32 ? 32 : sortSize) : kSORT_THREADS;
    sortGatherKernel<T><<<n, threads, smem, stream>>>(wh, reg, h, w, chw, kEff, k, sortSize,
        static_cast<float>(stride), ws, boxes, scores, classes);
    return cudaGetLastError();
}

template cudaError_t heatmapTopKImpl<float>(cudaStream_t, float const*, float const*, float const*, int32_t,
    int32_t, int32_t, int32_t, int32_t, bool, int32_t, float*, float*, int32_t*, void*, size_t);
template cudaError_t heatmapTopKImpl<__half>(cudaStream_t, __half const*, __half const*, __half const*, int32_t,
    int32_t, int32_t, int32_t, int32_t, bool, int32_t, __half*, __half*, int32_t*, void*, size_t);

} // namespace edgepose
