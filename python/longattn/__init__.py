"""longattn: exact attention over long contexts, split so that no submission
runs longer than a time budget.

    import longattn
    out = longattn.attention(q, k, v, causal=True, budget_ms=50)

q, k, v are PyTorch tensors (CPU or CUDA), NumPy arrays (float32, float16,
ml_dtypes.bfloat16) or any array with DLPack or the buffer protocol; they are
read in place (any strides, no copy) and the result comes back in q's
framework. See help(longattn.attention) for every option.

Also here: plan() (inspect the split without running it), merge_states()
(combine results over key shards exactly), Policy (how work is split),
DeviceProfile (the measured speed plans come from), RunReport and Plan (what
a run did and will do), and the errors, each under a built-in exception
type (InvalidArgument is a ValueError, Unsupported a NotImplementedError,
OutOfMemory a MemoryError, BackendError a RuntimeError).
"""

from ._api import (
    DeviceProfile,
    Policy,
    attention,
    attention_flops,
    cuda_built,
    default_profile,
    merge_states,
    plan,
)
from ._errors import (
    BackendError,
    Cancelled,
    Error,
    InvalidArgument,
    IoError,
    OutOfMemory,
    Unsupported,
)
from ._report import Dispatch, Plan, Rect, RunReport, Submission, SubmissionReport

__version__ = "0.1.0"

__all__ = [
    "attention",
    "plan",
    "merge_states",
    "Policy",
    "DeviceProfile",
    "default_profile",
    "cuda_built",
    "attention_flops",
    "RunReport",
    "SubmissionReport",
    "Plan",
    "Submission",
    "Dispatch",
    "Rect",
    "Error",
    "InvalidArgument",
    "Unsupported",
    "OutOfMemory",
    "BackendError",
    "IoError",
    "Cancelled",
]
