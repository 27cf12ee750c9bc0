// TensorRT IPluginV3 glue for edgepose HeatmapTopK (kernel: heatmapTopKKernel.h).
// Inputs hm [N,C,H,W], wh [N,2,H,W], reg [N,2,H,W] (fp32 or fp16, all the same);
// outputs boxes [N,K,4], scores [N,K] (input type), classes [N,K] int32.
#ifndef EDGEPOSE_HEATMAP_TOPK_PLUGIN_H
#define EDGEPOSE_HEATMAP_TOPK_PLUGIN_H

#include "NvInferRuntime.h"

#include <cstdint>
#include <vector>

namespace edgepose
{
namespace plugin
{

constexpr char const* kHEATMAP_TOPK_NAME = "HeatmapTopK";
constexpr char const* kHEATMAP_TOPK_VERSION = "1";

//! Attributes of one HeatmapTopK node (ONNX attributes K, apply_sigmoid, stride).
struct HeatmapTopKParams
{
    int32_t k{100};
    int32_t applySigmoid{1};
    int32_t stride{4};
};

class HeatmapTopKPlugin : public nvinfer1::IPluginV3,
                         public nvinfer1::IPluginV3OneCore,
                         public nvinfer1::IPluginV3OneBuild,
                         public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit HeatmapTopKPlugin(HeatmapTopKParams const& params);
    HeatmapTopKPlugin(HeatmapTopKPlugin const& other);
    HeatmapTopKPlugin& operator=(HeatmapTopKPlugin const&) = delete;
    ~HeatmapTopKPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

private:
    HeatmapTopKParams mParams;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class HeatmapTopKPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    HeatmapTopKPluginCreator();
    ~HeatmapTopKPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace plugin
} // namespace edgepose

#endif // EDGEPOSE_HEATMAP_TOPK_PLUGIN_H
