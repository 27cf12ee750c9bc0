// TensorRT IPluginV3 glue for edgepose HeatmapTopK. The CUDA work is in heatmapTopKKernel.cu;
// enqueue only dispatches on the data type.
#include "heatmapTopK/heatmapTopKPlugin.h"

#include "common/pluginUtils.h"
#include "heatmapTopK/heatmapTopKKernel.h"

#include <cuda_fp16.h>
#include <exception>
#include <new>

using namespace nvinfer1;

namespace edgepose
{
namespace plugin
{
namespace
{
constexpr int32_t kNB_INPUTS = 3;  // hm, wh, reg
constexpr int32_t kNB_OUTPUTS = 3; // boxes, scores, classes

bool inputsOk(Dims const& hm, Dims const& wh, Dims const& reg)
{
    if (hm.nbDims != 4 || wh.nbDims != 4 || reg.nbDims != 4)
    {
        return false;
    }
    for (Dims const* d : {&wh, &reg})
    {
        // -1 (unknown at build time) is accepted; known sizes must match hm's N, H, W and be 2 channels
        bool const ok = (d->d[0] == hm.d[0] || d->d[0] < 0 || hm.d[0] < 0) && (d->d[1] == 2 || d->d[1] < 0)
            && (d->d[2] == hm.d[2] || d->d[2] < 0 || hm.d[2] < 0) && (d->d[3] == hm.d[3] || d->d[3] < 0 || hm.d[3] < 0);
        if (!ok)
        {
            return false;
        }
    }
    return true;
}
} // namespace

HeatmapTopKPlugin::HeatmapTopKPlugin(HeatmapTopKParams const& params)
    : mParams(params)
{
}

HeatmapTopKPlugin::HeatmapTopKPlugin(HeatmapTopKPlugin const& other)
    : IPluginV3()
    , IPluginV3OneCore()
    , IPluginV3OneBuild()
    , IPluginV3OneRuntime()
    , mParams(other.mParams)
{
    // mFields points into the owning object: rebuilt by getFieldsToSerialize, never copied
}

IPluginCapability* HeatmapTopKPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* HeatmapTopKPlugin::clone() noexcept
{
    try
    {
        return new HeatmapTopKPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(kHEATMAP_TOPK_NAME, e.what());
    }
    return nullptr;
}

char const* HeatmapTopKPlugin::getPluginName() const noexcept
{
    return kHEATMAP_TOPK_NAME;
}

char const* HeatmapTopKPlugin::getPluginVersion() const noexcept
{
    return kHEATMAP_TOPK_VERSION;
}

char const* HeatmapTopKPlugin::getPluginNamespace() const noexcept
{
    return kNAMESPACE;
}

int32_t HeatmapTopKPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t HeatmapTopKPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
    {
        logError(kHEATMAP_TOPK_NAME, "needs 3 inputs (hm, wh, reg) and 3 outputs (boxes, scores, classes)");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    outputTypes[1] = inputTypes[0];
    outputTypes[2] = DataType::kINT32;
    return 0;
}

int32_t HeatmapTopKPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || inputs[0].nbDims != 4)
    {
        logError(kHEATMAP_TOPK_NAME, "needs hm [N,C,H,W], wh [N,2,H,W], reg [N,2,H,W]");
        return -1;
    }
    IDimensionExpr const* n = inputs[0].d[0];
    IDimensionExpr const* k = exprBuilder.constant(mParams.k);
    outputs[0].nbDims = 3;
    outputs[0].d[0] = n;
    outputs[0].d[1] = k;
    outputs[0].d[2] = exprBuilder.constant(4);
    outputs[1].nbDims = 2;
    outputs[1].d[0] = n;
    outputs[1].d[1] = k;
    outputs[2].nbDims = 2;
    outputs[2].d[0] = n;
    outputs[2].d[1] = k;
    return 0;
}

bool HeatmapTopKPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0 || pos >= kNB_INPUTS + kNB_OUTPUTS)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (pos == kNB_INPUTS + 2) // classes
    {
        return desc.type == DataType::kINT32 && desc.format == TensorFormat::kLINEAR;
    }
    if (!isFloatLinear(desc))
    {
        return false;
    }
    return pos == 0 || desc.type == inOut[0].desc.type;
}

int32_t HeatmapTopKPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || !inputsOk(in[0].desc.dims, in[1].desc.dims, in[2].desc.dims))
    {
        logError(kHEATMAP_TOPK_NAME, "needs hm [N,C,H,W], wh [N,2,H,W], reg [N,2,H,W] of the same N, H, W");
        return -1;
    }
    return 0;
}

size_t HeatmapTopKPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const* /*outputs*/,
    int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs != kNB_INPUTS || inputs[0].max.nbDims != 4)
    {
        return 0;
    }
    Dims const& m = inputs[0].max;
    return heatmapTopKWorkspaceSize(static_cast<int32_t>(m.d[0]), static_cast<int32_t>(m.d[1]),
        static_cast<int32_t>(m.d[2]), static_cast<int32_t>(m.d[3]), mParams.k);
}

int32_t HeatmapTopKPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || !inputsOk(in[0].dims, in[1].dims, in[2].dims))
    {
        logError(kHEATMAP_TOPK_NAME, "needs hm [N,C,H,W], wh [N,2,H,W], reg [N,2,H,W] of the same N, H, W");
        return -1;
    }
    return 0;
}

int32_t HeatmapTopKPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    Dims const& d = inputDesc[0].dims;
    int32_t const n = static_cast<int32_t>(d.d[0]);
    int32_t const c = static_cast<int32_t>(d.d[1]);
    int32_t const h = static_cast<int32_t>(d.d[2]);
    int32_t const w = static_cast<int32_t>(d.d[3]);
    size_t const wsSize = heatmapTopKWorkspaceSize(n, c, h, w, mParams.k);
    bool const sigmoid = mParams.applySigmoid != 0;
    cudaError_t status = cudaErrorInvalidValue;
    switch (inputDesc[0].type)
    {
    case DataType::kFLOAT:
        status = heatmapTopKImpl<float>(stream, static_cast<float const*>(inputs[0]),
            static_cast<float const*>(inputs[1]), static_cast<float const*>(inputs[2]), n, c, h, w, mParams.k, sigmoid,
            mParams.stride, static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]),
            static_cast<int32_t*>(outputs[2]), workspace, wsSize);
        break;
    case DataType::kHALF:
        status = heatmapTopKImpl<__half>(stream, static_cast<__half const*>(inputs[0]),
            static_cast<__half const*>(inputs[1]), static_cast<__half const*>(inputs[2]), n, c, h, w, mParams.k,
            sigmoid, mParams.stride, static_cast<__half*>(outputs[0]), static_cast<__half*>(outputs[1]),
            static_cast<int32_t*>(outputs[2]), workspace, wsSize);
        break;
    default: logError(kHEATMAP_TOPK_NAME, "unsupported data type (fp32/fp16 only)"); return -1;
    }
    if (status != cudaSuccess)
    {
        logError(kHEATMAP_TOPK_NAME, cudaGetErrorString(status));
        return -1;
    }
    return 0;
}

IPluginV3* HeatmapTopKPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* HeatmapTopKPlugin::getFieldsToSerialize() noexcept
{
    mFields.clear();
    mFields.emplace_back("K", &mParams.k, PluginFieldType::kINT32, 1);
    mFields.emplace_back("apply_sigmoid", &mParams.applySigmoid, PluginFieldType::kINT32, 1);
    mFields.emplace_back("stride", &mParams.stride, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

// ------------------------------------------------------------------------------------ creator
HeatmapTopKPluginCreator::HeatmapTopKPluginCreator()
{
    mFields.emplace_back("K", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("apply_sigmoid", nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back("stride", nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* HeatmapTopKPluginCreator::getPluginName() const noexcept
{
    return kHEATMAP_TOPK_NAME;
}

char const* HeatmapTopKPluginCreator::getPluginVersion() const noexcept
{
    return kHEATMAP_TOPK_VERSION;
}

char const* HeatmapTopKPluginCreator::getPluginNamespace() const noexcept
{
    return kNAMESPACE;
}

PluginFieldCollection const* HeatmapTopKPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* HeatmapTopKPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    HeatmapTopKParams params;
    int64_t value = 0;
    if (readIntField(fc, "K", value))
    {
        params.k = static_cast<int32_t>(value);
    }
    if (readIntField(fc, "apply_sigmoid", value))
    {
        params.applySigmoid = value != 0 ? 1 : 0;
    }
    if (readIntField(fc, "stride", value))
    {
        params.stride = static_cast<int32_t>(value);
    }
    if (params.k < 1 || params.k > kHEATMAP_TOPK_MAX_K || params.stride < 1)
    {
        logError(kHEATMAP_TOPK_NAME, "attributes need 1 <= K <= 4096 and stride >= 1; re-export with a smaller K");
        return nullptr;
    }
    try
    {
        return new HeatmapTopKPlugin(params);
    }
    catch (std::exception const& e)
    {
        logError(kHEATMAP_TOPK_NAME, e.what());
    }
    return nullptr;
}

} // namespace plugin
} // namespace edgepose
