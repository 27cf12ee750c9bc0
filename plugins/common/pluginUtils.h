// Small helpers shared by the edgepose TensorRT plugins (header-only, TensorRT 10.x/11.x).
#ifndef EDGEPOSE_PLUGIN_UTILS_H
#define EDGEPOSE_PLUGIN_UTILS_H

#include "NvInferRuntime.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace edgepose
{
namespace plugin
{

//! Namespace every edgepose creator is registered under (ONNX attribute `plugin_namespace`).
constexpr char const* kNAMESPACE = "edgepose";

//! Errors go to stderr with the plugin name: TensorRT's logger is not reachable from every
//! entry point (static registration runs before the application has created one).
inline void logError(char const* plugin, char const* message) noexcept
{
    std::fprintf(stderr, "[edgepose plugin %s] error: %s\n", plugin, message);
}

//! Read an integer attribute from a field collection. TensorRT's ONNX parser passes ints as
//! kINT32 (narrowed); serialized plugins carry kINT32 too; kINT64/kINT16/kINT8 are accepted.
//! Returns false when the field is absent or not an integer.
inline bool readIntField(nvinfer1::PluginFieldCollection const* fc, char const* name, int64_t& value) noexcept
{
    if (fc == nullptr || fc->fields == nullptr)
    {
        return false;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        nvinfer1::PluginField const& f = fc->fields[i];
        if (f.name == nullptr || std::strcmp(f.name, name) != 0 || f.data == nullptr || f.length < 1)
        {
            continue;
        }
        switch (f.type)
        {
        case nvinfer1::PluginFieldType::kINT32: value = *static_cast<int32_t const*>(f.data); return true;
        case nvinfer1::PluginFieldType::kINT64: value = *static_cast<int64_t const*>(f.data); return true;
        case nvinfer1::PluginFieldType::kINT16: value = *static_cast<int16_t const*>(f.data); return true;
        case nvinfer1::PluginFieldType::kINT8: value = *static_cast<int8_t const*>(f.data); return true;
        default: return false;
        }
    }
    return false;
}

//! fp32 or fp16, linear (NCHW) layout: the only formats the edgepose kernels take.
inline bool isFloatLinear(nvinfer1::PluginTensorDesc const& desc) noexcept
{
    return desc.format == nvinfer1::TensorFormat::kLINEAR
        && (desc.type == nvinfer1::DataType::kFLOAT || desc.type == nvinfer1::DataType::kHALF);
}

} // namespace plugin
} // namespace edgepose

#endif // EDGEPOSE_PLUGIN_UTILS_H
