// TensorRT IPluginV3 glue for edgepose CornerPool. The CUDA work is in cornerPoolKernel.cu;
// enqueue only dispatches on the data type.
#include "cornerPool/cornerPoolPlugin.h"

#include "common/pluginUtils.h"
#include "cornerPool/cornerPoolKernel.h"

#include <cuda_fp16.h>
#include <exception>
#include <new>

using namespace nvinfer1;

namespace edgepose
{
namespace plugin
{

CornerPoolPlugin::CornerPoolPlugin(int32_t mode)
    : mMode(mode)
{
}

CornerPoolPlugin::CornerPoolPlugin(CornerPoolPlugin const& other)
    : IPluginV3()
    , IPluginV3OneCore()
    , IPluginV3OneBuild()
    , IPluginV3OneRuntime()
    , mMode(other.mMode)
{
    // mFields points into the owning object: rebuilt by getFieldsToSerialize, never copied
}

IPluginCapability* CornerPoolPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* CornerPoolPlugin::clone() noexcept
{
    try
    {
        return new CornerPoolPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(kCORNER_POOL_NAME, e.what());
    }
    return nullptr;
}

char const* CornerPoolPlugin::getPluginName() const noexcept
{
    return kCORNER_POOL_NAME;
}

char const* CornerPoolPlugin::getPluginVersion() const noexcept
{
    return kCORNER_POOL_VERSION;
}

char const* CornerPoolPlugin::getPluginNamespace() const noexcept
{
    return kNAMESPACE;
}

int32_t CornerPoolPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t CornerPoolPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != 1 || nbOutputs != 1)
    {
        logError(kCORNER_POOL_NAME, "needs exactly one input and one output");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t CornerPoolPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || inputs[0].nbDims != 4)
    {
        logError(kCORNER_POOL_NAME, "needs one input of rank 4 (N, C, H, W)");
        return -1;
    }
    outputs[0] = inputs[0];
    return 0;
}

bool CornerPoolPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || pos < 0 || pos > 1)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (!isFloatLinear(desc))
    {
        return false;
    }
    return pos == 0 || desc.type == inOut[0].desc.type;
}

int32_t CornerPoolPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || in[0].desc.dims.nbDims != 4)
    {
        logError(kCORNER_POOL_NAME, "needs one input of rank 4 (N, C, H, W)");
        return -1;
    }
    return 0;
}

int32_t CornerPoolPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs != 1 || nbOutputs != 1 || in[0].dims.nbDims != 4)
    {
        logError(kCORNER_POOL_NAME, "needs one input of rank 4 (N, C, H, W)");
        return -1;
    }
    return 0;
}

int32_t CornerPoolPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    Dims const& d = inputDesc[0].dims;
    int32_t const n = static_cast<int32_t>(d.d[0]);
    int32_t const c = static_cast<int32_t>(d.d[1]);
    int32_t const h = static_cast<int32_t>(d.d[2]);
    int32_t const w = static_cast<int32_t>(d.d[3]);
    auto const mode = static_cast<CornerPoolMode>(mMode);
    cudaError_t status = cudaErrorInvalidValue;
    switch (inputDesc[0].type)
    {
    case DataType::kFLOAT:
        status = cornerPoolImpl<float>(
            stream, static_cast<float const*>(inputs[0]), static_cast<float*>(outputs[0]), n, c, h, w, mode);
        break;
    case DataType::kHALF:
        status = cornerPoolImpl<__half>(
            stream, static_cast<__half const*>(inputs[0]), static_cast<__half*>(outputs[0]), n, c, h, w, mode);
        break;
    default: logError(kCORNER_POOL_NAME, "unsupported data type (fp32/fp16 only)"); return -1;
    }
    if (status != cudaSuccess)
    {
        logError(kCORNER_POOL_NAME, cudaGetErrorString(status));
        return -1;
    }
    return 0;
}

IPluginV3* CornerPoolPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* CornerPoolPlugin::getFieldsToSerialize() noexcept
{
    mFields.clear();
    mFields.emplace_back("mode", &mMode, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

// ------------------------------------------------------------------------------------ creator
CornerPoolPluginCreator::CornerPoolPluginCreator()
{
    mFields.emplace_back("mode", nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* CornerPoolPluginCreator::getPluginName() const noexcept
{
    return kCORNER_POOL_NAME;
}

char const* CornerPoolPluginCreator::getPluginVersion() const noexcept
{
    return kCORNER_POOL_VERSION;
}

char const* CornerPoolPluginCreator::getPluginNamespace() const noexcept
{
    return kNAMESPACE;
}

PluginFieldCollection const* CornerPoolPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* CornerPoolPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    int64_t mode = -1;
    if (!readIntField(fc, "mode", mode) || mode < 0 || mode > 3)
    {
        logError(kCORNER_POOL_NAME,
            "attribute 'mode' must be an int 0..3 (0 top, 1 bottom, 2 left, 3 right); re-export the ONNX "
            "with edgepose");
        return nullptr;
    }
    try
    {
        return new CornerPoolPlugin(static_cast<int32_t>(mode));
    }
    catch (std::exception const& e)
    {
        logError(kCORNER_POOL_NAME, e.what());
    }
    return nullptr;
}

} // namespace plugin
} // namespace edgepose
