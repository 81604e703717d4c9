"""Loaded by pytest.ini (`-p tests.tcmalloc_plugin`) before pytest captures output: the suite
restarts once with TCMalloc preloaded when it is installed (oat_tf/allocator.py)."""

from oat_tf.allocator import restart_with_tcmalloc

restart_with_tcmalloc()
