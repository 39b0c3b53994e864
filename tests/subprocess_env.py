"""Environment for test subprocesses: they must import the same gprat as the test process
(the installed package, or a source tree with a built extension), never a bare source tree."""

import os

import gprat


def gprat_env(**overrides):
    """A copy of os.environ whose PYTHONPATH starts with the directory holding the gprat under test."""
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(gprat.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [package_parent, env.get("PYTHONPATH", "")] if p)
    env.update(overrides)
    return env
