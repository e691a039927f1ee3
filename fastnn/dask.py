"""``fastnn.dask``: data-parallel training on a Dask cluster.

The public name of :mod:`fastnn.integrations.dask` (one module, two names:
``import fastnn.dask as fd`` gives that very module).
"""
import sys

from .integrations import dask as _impl

sys.modules[__name__] = _impl
