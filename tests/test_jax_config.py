"""How hpcfit sets JAX up (hpcfit.jax_config): float64, and the persistent compilation cache's
folder by the environment, in a fresh interpreter each time (JAX reads its settings at import)."""
import json
import os
import subprocess
import sys

import pytest

PROBE = ("import json, os, hpcfit, jax; print(json.dumps([os.environ.get('JAX_COMPILATION_CACHE_DIR'), "
         "jax.config.jax_compilation_cache_dir, jax.config.jax_enable_x64]))")


def probe(env: dict, code: str = PROBE) -> list:
    base = {k: v for k, v in os.environ.items()
            if k not in ("HPCFIT_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cache_is_under_xdg_cache_home_in_a_folder_per_cpu_kind(tmp_path):
    env_dir, jax_dir, x64 = probe({"XDG_CACHE_HOME": str(tmp_path)})
    assert x64 is True and env_dir == jax_dir
    parent, kind = os.path.split(jax_dir)
    assert parent == str(tmp_path / "hpcfit" / "jax") and kind.startswith(os.uname().machine + "-")


def test_a_path_in_hpcfit_compilation_cache_is_used_and_off_turns_it_off(tmp_path):
    assert probe({"HPCFIT_COMPILATION_CACHE": str(tmp_path / "c")})[1].startswith(str(tmp_path / "c") + os.sep)
    for off in ("off", "0", "none"):
        assert probe({"HPCFIT_COMPILATION_CACHE": off})[:2] == [None, None]


@pytest.mark.parametrize("jax_first", [False, True])
def test_a_cache_the_user_set_for_jax_is_left_alone(tmp_path, jax_first):
    mine = str(tmp_path / "mine")
    if jax_first:                     # set through jax.config before hpcfit is imported
        code = ("import json, jax; jax.config.update('jax_compilation_cache_dir', %r); import hpcfit; "
                "print(json.dumps([jax.config.jax_compilation_cache_dir, jax.config.jax_enable_x64]))" % mine)
        assert probe({}, code) == [mine, True]
    else:
        assert probe({"JAX_COMPILATION_CACHE_DIR": mine})[:2] == [mine, mine]


def test_a_child_process_applies_its_own_setting_not_the_one_its_parent_hpcfit_made(tmp_path):
    """hpcfit sets JAX_COMPILATION_CACHE_DIR for JAX; a child inherits it, but it is not the user's:
    the child's HPCFIT_COMPILATION_CACHE decides (off, or another folder)."""
    parent = ("import json, os, subprocess, sys, hpcfit; env = dict(os.environ, HPCFIT_COMPILATION_CACHE=%r); "
              "print(subprocess.run([sys.executable, '-c', %r], env=env, capture_output=True, text=True)"
              ".stdout.strip().splitlines()[-1])")
    for child_setting, want in (("off", None), (str(tmp_path / "child"), str(tmp_path / "child"))):
        got = probe({"XDG_CACHE_HOME": str(tmp_path / "parent")}, parent % (child_setting, PROBE))
        assert got[2] is True
        if want is None:
            assert got[:2] == [None, None]
        else:
            assert got[1].startswith(want + os.sep)


def test_a_folder_that_cannot_be_made_means_no_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert probe({"HPCFIT_COMPILATION_CACHE": str(blocker)})[:2] == [None, None]
