"""Out of memory, told apart from every other failure: the job's ``oom_policy`` retries it at a
smaller batch, and an instrument that runs out of memory fails its job rather than its record alone."""
from __future__ import annotations

import torch

OOM_ERRORS = (torch.OutOfMemoryError, MemoryError)
#: torch's CPU allocator reports a failed allocation as a plain RuntimeError with this text.
CPU_ALLOCATION_FAILURE = "DefaultCPUAllocator: can't allocate memory"


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or torch's CPU allocator giving up."""
    return isinstance(exc, OOM_ERRORS) or (isinstance(exc, RuntimeError)
                                           and CPU_ALLOCATION_FAILURE in str(exc))
