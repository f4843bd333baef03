# The CUDA backend, included by src/CMakeLists.txt when LONGATTN_HAVE_CUDA:
# the backend (host C++), the split-K merge kernel, and one generated
# translation unit per (dtype, head_dim) for the head dims listed in
# LONGATTN_CUDA_HEAD_DIMS, plus a generated table of their launchers.
set(_la_cuda_dir ${CMAKE_CURRENT_LIST_DIR})
set(_la_gen_dir ${CMAKE_CURRENT_BINARY_DIR}/cuda_gen)
set(_la_supported 64 80 96 128 192 256)
if(NOT LONGATTN_CUDA_HEAD_DIMS)
  message(FATAL_ERROR "LONGATTN_CUDA_HEAD_DIMS is empty; pick some of: ${_la_supported}")
endif()

set(LA_DECLS "")
set(LA_ENTRIES "")
set(_la_sources "")
foreach(_la_d IN LISTS LONGATTN_CUDA_HEAD_DIMS)
  if(NOT _la_d IN_LIST _la_supported)
    message(FATAL_ERROR "LONGATTN_CUDA_HEAD_DIMS: ${_la_d} is not one of ${_la_supported}")
  endif()
  foreach(_la_t f32 f16 bf16)
    if(_la_t STREQUAL "f32")
      set(LA_CTYPE float)
      set(_la_dtype 0)
    elseif(_la_t STREQUAL "f16")
      set(LA_CTYPE __half)
      set(_la_dtype 1)
    else()
      set(LA_CTYPE __nv_bfloat16)
      set(_la_dtype 2)
    endif()
    set(LA_NAME ${_la_t})
    set(LA_D ${_la_d})
    set(_la_file ${_la_gen_dir}/attn_${_la_t}_d${_la_d}.cu)
    configure_file(${_la_cuda_dir}/instantiate.cu.in ${_la_file} @ONLY)
    list(APPEND _la_sources ${_la_file})
    string(APPEND LA_DECLS "KernelKind launch_${_la_t}_d${_la_d}(const KernelParams& p, void* stream);\n")
    string(APPEND LA_DECLS "int occupancy_${_la_t}_d${_la_d}();\n")
    string(APPEND LA_ENTRIES "    {${_la_dtype}, ${_la_d}, &launch_${_la_t}_d${_la_d}, &occupancy_${_la_t}_d${_la_d}},\n")
  endforeach()
endforeach()
configure_file(${_la_cuda_dir}/registry.cpp.in ${_la_gen_dir}/registry.cpp @ONLY)

target_sources(longattn PRIVATE
  ${_la_cuda_dir}/cuda_backend.cpp
  ${_la_cuda_dir}/device_cache.cpp
  ${_la_cuda_dir}/split_k.cpp
  ${_la_cuda_dir}/merge_kernel.cu
  ${_la_cuda_dir}/mask_summary.cu
  ${_la_cuda_dir}/tensor_map.cpp
  ${_la_gen_dir}/registry.cpp
  ${_la_sources})
# The CUDA sources are C++17: CMake 3.25 does not know how to ask nvcc for
# C++20 ("CUDA20" dialect error), and the kernels need nothing newer.
set_target_properties(longattn PROPERTIES
  CUDA_STANDARD 17
  CUDA_ARCHITECTURES "${LONGATTN_CUDA_ARCHS}"
  CUDA_RUNTIME_LIBRARY Shared)
target_link_libraries(longattn PUBLIC CUDA::cudart)
# The host picks the Hopper kernel only when its sm_90a code is in the binary.
if("90a" IN_LIST LONGATTN_CUDA_ARCHS)
  target_compile_definitions(longattn PRIVATE LONGATTN_CUDA_SM90A)
endif()
target_compile_options(longattn PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo --expt-relaxed-constexpr>)
