"""tonearm: an adaptive mastering engine and music-library server.

Layers (arrows are allowed imports)::

    errors, types, events  <-  dsp, audio_io  <-  mastering  <-  jobs  <-  server  <-  cli

Users import from the subpackages (``tonearm.mastering``, ``tonearm.audio_io``); this module only
carries the version so that importing it stays cheap.

BLAS thread pools default to one thread. tonearm parallelises across files and blocks itself
(thread and process pools); OpenBLAS threads nested inside those spin-wait for busy cores and
made a master up to three times slower under load. Set the variables yourself to override
(they must be set before numpy is first imported).
"""

import os as _os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_variable, "1")

__version__ = "0.1.0"
__all__ = ["__version__"]
