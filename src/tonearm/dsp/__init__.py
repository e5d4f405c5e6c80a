"""Pure DSP on float32 ``(channels, frames)`` arrays.

- ``filters``: filter design (BS.1770 K-weighting at any rate).
- ``loudness``: BS.1770-4 integrated loudness, EBU Tech 3342 loudness range, streaming meter.
- ``true_peak``: 4x-oversampled true peak (BS.1770-4 Annex 2), streaming detector and meter.
- ``stats``: sample peak, RMS, crest factor, mid/side width and phase correlation.
- ``channels``: mid/side conversion.
- ``spectrum``: long-term mid/side power spectra and fractional-octave bands.
- ``envelope``: vectorised lookahead gain smoothing shared by the dynamics stages.
- ``dynamics``: the gentle compressor and the lookahead true-peak limiter.
- ``eq``: linear-phase FIR design from a dB curve and a streaming FFT convolver.

Functions take the audio first and keyword-only parameters with units in their names. Stateful
stream processors have an explicit ``reset()``; nothing keeps state between files.
"""
