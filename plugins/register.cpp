// Registration of the edgepose plugin creators with TensorRT's plugin registry.
//
// Default (EDGEPOSE_STATIC_REGISTRATION defined, as CMakeLists.txt does): loading
// libedgepose_plugins.so (ctypes.CDLL with RTLD_GLOBAL via edgepose.plugins.load(), dlopen,
// `trtexec --staticPlugins=libedgepose_plugins.so`, or linking against it) registers every creator
// under the namespace "edgepose" from a static initialiser.
//
// Without it (-DEDGEPOSE_STATIC_REGISTRATION=OFF in CMake) the library instead exports the
// entry points TensorRT's IPluginRegistry::loadLibrary / `trtexec --dynamicPlugins=` call:
// getCreators() and setLoggerFinder(). Only one of the two mechanisms is compiled in, so a
// creator is never registered twice.
#include "NvInferRuntime.h"

#include "common/pluginUtils.h"
#include "cornerPool/cornerPoolPlugin.h"
#include "heatmapTopK/heatmapTopKPlugin.h"

#include <cstdint>

namespace edgepose
{
namespace plugin
{
namespace
{

nvinfer1::IPluginCreatorInterface* const* allCreators(int32_t& count) noexcept
{
    static CornerPoolPluginCreator cornerPool;
    static HeatmapTopKPluginCreator heatmapTopK;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&cornerPool, &heatmapTopK};
    count = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}

#ifdef EDGEPOSE_STATIC_REGISTRATION
struct StaticRegistration
{
    StaticRegistration() noexcept
    {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (registry == nullptr)
        {
            logError("register", "TensorRT returned no plugin registry; the edgepose plugins are not registered");
            return;
        }
        int32_t count = 0;
        nvinfer1::IPluginCreatorInterface* const* creators = allCreators(count);
        for (int32_t i = 0; i < count; ++i)
        {
            if (!registry->registerCreator(*creators[i], kNAMESPACE))
            {
                // already registered (the library was loaded twice under two paths) or refused
                logError("register", "a creator was not registered (already registered under 'edgepose'?)");
            }
        }
    }
};

StaticRegistration const gRegistration{};
#endif

} // namespace
} // namespace plugin
} // namespace edgepose

#ifndef EDGEPOSE_STATIC_REGISTRATION
extern "C"
{
    __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* /*finder*/) noexcept {}

    __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
        int32_t& nbCreators) noexcept
    {
        return edgepose::plugin::allCreators(nbCreators);
    }
}
#endif
