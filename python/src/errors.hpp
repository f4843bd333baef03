// longattn's C++ errors as Python exceptions (longattn/_errors.py), each
// under the built-in type a Python caller catches:
//   InvalidArgument -> longattn.InvalidArgument (ValueError)
//   Unsupported     -> longattn.Unsupported (NotImplementedError)
//   OutOfMemory     -> longattn.OutOfMemory (MemoryError)
//   BackendError    -> longattn.BackendError (RuntimeError)
//   IoError         -> longattn.IoError (OSError)
//   Cancelled       -> longattn.Cancelled
// with the C++ message unchanged and, where the run stopped part way, its
// report (`.report`, `.finished_rows`).
#pragma once

namespace longattn::py {

// Installs the translation for every function of the module.
void register_error_translator();

}  // namespace longattn::py
