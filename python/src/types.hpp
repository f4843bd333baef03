// Python classes bound to C++ types.
#pragma once

#include <nanobind/nanobind.h>

namespace longattn::py {

namespace nb = nanobind;

// longattn._core.DeviceProfile.
void bind_device_profile(nb::module_& m);

}  // namespace longattn::py
