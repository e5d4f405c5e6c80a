"""tonearm: an adaptive mastering engine and music-library server.

Layers (arrows are allowed imports)::

    errors, types, events  <-  dsp, audio_io  <-  mastering  <-  jobs  <-  server  <-  cli

Users import from the subpackages (``tonearm.mastering``, ``tonearm.audio_io``); this module only
carries the version so that importing it stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
