"""How a results file was made, and atomic writes so that an interrupted run leaves no half file."""

import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile


# The vector extensions that decide which of TFLite's kernels a machine can run: machines reporting the same
# CPU model here differed 4× in int8 latency (`README.md`, Set up and test), so a results file names them.
SIMD_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
                 "amx_int8", "neon", "asimd", "asimddp", "i8mm", "sve", "sve2", "bf16")


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def cpu_model(cpuinfo):
    """The first "model name" in a /proc/cpuinfo text, else what `platform` says."""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def simd_features(cpuinfo):
    """The `SIMD_FEATURES` the first CPU of a /proc/cpuinfo text lists (x86 "flags", Arm "Features")."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            listed = set(value.split())
            return [feature for feature in SIMD_FEATURES if feature in listed]
    return []


def _git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return commit + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# Read when the run starts (this module is imported before any work): a commit made while a long run
# goes on must not be taken for the code that ran.
_COMMIT_AT_START = _git_commit()


def provenance(**extra):
    """Command, git commit (at process start; `commit_at_write` as well if the checkout changed since),
    hardware (CPU model, its `SIMD_FEATURES`, cores, GPUs), software versions and UTC time, plus `extra` fields."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    cpuinfo = _cpuinfo()
    commit_now = _git_commit()
    changed = {} if commit_now == _COMMIT_AT_START else dict(commit_at_write=commit_now)
    return dict(
        command=" ".join([os.path.basename(sys.executable)] + sys.argv),
        commit=_COMMIT_AT_START,
        **changed,
        hardware=dict(cpu=cpu_model(cpuinfo), simd=simd_features(cpuinfo), cores=os.cpu_count(), gpus=gpus),
        software=dict(python=platform.python_version(), tensorflow=tf.__version__),
        time_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    )


def file_sha256(path):
    """Hex SHA-256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path, write):
    """Calls write(temporary_path), then renames the file to `path` (same directory, atomic)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def read_json(path):
    """The JSON document at `path`; ValueError naming the file when it is not valid JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path!r} is not valid JSON ({error}); was it truncated or edited?") from None


def write_json(path, data):
    def write(temporary):
        with open(temporary, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")

    write_atomic(path, write)
