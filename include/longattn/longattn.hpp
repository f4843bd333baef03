// Umbrella header: everything public.
#pragma once

#include "longattn/attention.hpp"  // IWYU pragma: export
#include "longattn/calibrate.hpp"  // IWYU pragma: export
#include "longattn/error.hpp"      // IWYU pragma: export
#include "longattn/plan.hpp"       // IWYU pragma: export
#include "longattn/tensor.hpp"     // IWYU pragma: export
