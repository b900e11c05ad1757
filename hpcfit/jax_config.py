"""How hpcfit sets JAX up, before JAX is imported where possible (importing hpcfit stays fast).

* float64 everywhere (``jax_enable_x64``): the sums of a fit are float64.
* A persistent compilation cache: a fresh process loads the kernels an earlier one compiled (the
  batched g2 kernel compiles in ~2 s, an XPCS fit's kernels in several) instead of compiling them
  again. It lives in ``$HPCFIT_COMPILATION_CACHE``, else ``$XDG_CACHE_HOME/hpcfit/jax`` (default
  ``~/.cache/hpcfit/jax``), in a folder per CPU kind: cluster nodes of another CPU kind share the
  path but not the entries (XLA refuses an executable built for CPU features the host lacks).
  ``HPCFIT_COMPILATION_CACHE=off`` turns it off; a cache the user set up for JAX
  (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is. A folder that cannot be made
  or written means no cache; an entry that cannot be read (another process still writing it) costs
  a warning from JAX and a compilation, never a failed fit. Only compilations of at least 0.5 s are
  kept. The cache is code that JAX runs: keep it where only you can write.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys

OFF = ("off", "0", "no", "false", "none", "")
# JAX_COMPILATION_CACHE_DIR as hpcfit set it, so that a child process (which inherits both) tells it
# from a user's own setting and applies its own HPCFIT_COMPILATION_CACHE
OURS = "HPCFIT_SET_JAX_COMPILATION_CACHE_DIR"
MIN_COMPILE_SECONDS = 0.5


def _cpu_kind() -> str:
    """A short key of this machine's CPU: architecture, model and feature flags."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            lines = [line for line in info if line.startswith(("model name", "flags", "Features", "CPU part"))]
        text += "".join(sorted(set(lines)))
    except OSError:
        text += platform.processor()
    return f"{platform.machine()}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def cache_dir() -> str | None:
    """The folder of the persistent compilation cache, or None when it is off."""
    setting = os.environ.get("HPCFIT_COMPILATION_CACHE")
    if setting is not None and setting.strip().lower() in OFF:
        return None
    base = setting or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "hpcfit", "jax")
    folder = os.path.join(base, _cpu_kind())
    try:                          # a folder that cannot be made or written: no cache, not a warning per kernel
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def configure() -> None:
    """float64 and the compilation cache: by the environment when JAX is not imported yet, else
    through ``jax.config``."""
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
    else:
        os.environ["JAX_ENABLE_X64"] = "1"
    from_env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if from_env and from_env == os.environ.get(OURS):        # a parent hpcfit's, not the user's
        del os.environ["JAX_COMPILATION_CACHE_DIR"]
        from_env = None
    user_cache = from_env or (jax is not None and jax.config.jax_compilation_cache_dir)
    folder = None if user_cache else cache_dir()
    if folder is None:
        return
    if jax is not None:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    else:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ[OURS] = folder
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(MIN_COMPILE_SECONDS))
