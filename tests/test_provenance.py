import json
import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT

# Imports provenance (the run starts), commits a change (as a developer would during a long run), then
# writes the provenance (the run ends).
_RUN = """
import json, pathlib, subprocess, sys
from package.provenance import provenance
pathlib.Path("tracked.txt").write_text("changed during the run")
subprocess.run(["git", "commit", "-qam", "during the run"], check=True)
print(json.dumps(provenance()))
"""


_IDENTITY = dict(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=dict(os.environ, **_IDENTITY)).stdout.strip()


def test_provenance_names_the_commit_the_run_started_from(tmp_path):
    repo = tmp_path / "repo"
    (repo / "package").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "oat_tf", "provenance.py"), repo / "package" / "provenance.py")
    (repo / "tracked.txt").write_text("before the run")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "start")
    start = _git(repo, "rev-parse", "HEAD")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **_IDENTITY)
    done = subprocess.run([sys.executable, "-c", _RUN], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.splitlines()[-1])
    assert record["commit"] == start
    assert record["commit_at_write"] == _git(repo, "rev-parse", "HEAD") != start


_X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 avx f16c avx2 avx512f avx512bw avx512_vnni
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse sse2
"""
_ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm asimddp i8mm
CPU implementer\t: 0x41
"""


def test_hardware_names_the_simd_extensions_of_the_first_cpu():
    from oat_tf.provenance import cpu_model, provenance, simd_features

    assert cpu_model(_X86_CPUINFO) == "AMD EPYC"
    assert simd_features(_X86_CPUINFO) == ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni"]
    assert simd_features(_ARM_CPUINFO) == ["asimd", "asimddp", "i8mm"]  # asimdhp, asimdrdm are not listed
    assert simd_features("processor\t: 0\n") == []
    hardware = provenance()["hardware"]
    assert set(hardware) == {"cpu", "simd", "cores", "gpus"} and isinstance(hardware["simd"], list)
