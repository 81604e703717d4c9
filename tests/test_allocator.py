import os
import subprocess
import sys

from oat_tf.allocator import OPT_OUT, tcmalloc_library

SHOW_PRELOAD = ("from oat_tf.allocator import restart_with_tcmalloc; restart_with_tcmalloc(); "
                "import os, sys; print(os.environ.get('LD_PRELOAD', '')); print('tensorflow' in sys.modules)")


def preload_after_restart(**environment):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", OPT_OUT)}
    result = subprocess.run([sys.executable, "-c", SHOW_PRELOAD], capture_output=True, text=True, timeout=60,
                            env=dict(env, **environment))
    assert result.returncode == 0, result.stderr[-2000:]
    preload, tensorflow_loaded = result.stdout.split("\n")[:2]
    assert tensorflow_loaded == "False"  # the allocator module (and the package) load without TensorFlow
    return preload


def test_a_command_restarts_once_with_tcmalloc_preloaded_when_installed():
    library = tcmalloc_library()
    preload = preload_after_restart()
    # .ci/run installs libtcmalloc-minimal4; without it the command goes on with the system allocator.
    assert preload == (library or "")


def test_the_system_allocator_is_kept_on_request_or_when_already_preloaded():
    assert preload_after_restart(**{OPT_OUT: "1"}) == ""
    assert preload_after_restart(LD_PRELOAD="libm.so.6") == (f"{tcmalloc_library()} libm.so.6" if tcmalloc_library()
                                                               else "libm.so.6")
    if tcmalloc_library():
        assert preload_after_restart(LD_PRELOAD=tcmalloc_library()) == tcmalloc_library()
