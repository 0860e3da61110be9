"""mc_jupyter: model-compose's local-model YAML, kernel-resident, in Jupyter.

    %load_ext mc_jupyter      registers %%compose, %%run (cell magic; IPython's %run still works), %mc

Loading the extension imports neither torch nor transformers: drivers import them on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import (REGISTRY, chat, compare, compose, down, form, inputs, logs, read_config, run, status,  # noqa: E402
                  stop, unload)
from .errors import (ConfigError, McJupyterError, MissingPackageError, RunError,  # noqa: E402
                     UserError)

__all__ = ["compose", "run", "chat", "compare", "form", "inputs", "status", "unload", "stop", "down", "logs", "read_config", "REGISTRY", "McJupyterError",
           "UserError", "ConfigError", "RunError", "MissingPackageError", "load_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    from . import progress
    progress.install()          # no TqdmWarning ("IProgress not found") in this kernel's stderr
    from .drivers.hf_common import quiet_library_notices
    quiet_library_notices()     # nor what libraries say on import that is no news (filters only: no torch)
    from .magics import McJupyter
    magics = McJupyter(shell=ipython, config=ipython.config)
    ipython.configurables.append(magics)   # so `%config McJupyter.auto_install = True` reaches it
    ipython.register_magics(magics)
    from .sidebar import register
    register()   # the JupyterLab sidebar's comm target


def unload_ipython_extension(ipython) -> None:
    REGISTRY.down()
