"""TCMalloc for TensorFlow processes on the CPU.

TensorFlow allocates and frees activation buffers of several MB at every step. glibc's malloc
hands buffers that large to mmap/munmap, so each step pays for fresh, zeroed pages: on a
2-core machine a third of a training step was system time, and OATS's training step ran about
3× faster with TCMalloc preloaded (`bench/train_step.py`, results/pretrained/README.md).
"""

import ctypes.util
import os
import sys

OPT_OUT = "OAT_TF_SYSTEM_MALLOC"  # set to 1 to keep the system allocator


def tcmalloc_library():
    """The installed TCMalloc shared library's name (Debian: libtcmalloc-minimal4), or None."""
    return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def restart_with_tcmalloc():
    """Re-executes this Python command with TCMalloc preloaded, once, when it is installed.

    Call it first thing in a script's `__main__`, before TensorFlow is imported; it returns
    without doing anything when TCMalloc is missing or already preloaded, or when the
    environment variable `OAT_TF_SYSTEM_MALLOC=1` asks for the system allocator.
    """
    library = tcmalloc_library()
    preloaded = os.environ.get("LD_PRELOAD", "")
    if library is None or "tcmalloc" in preloaded or os.environ.get(OPT_OUT) == "1":
        return
    environment = dict(os.environ, LD_PRELOAD=f"{library} {preloaded}".strip())
    os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], environment)
