"""Speech synthesis with eSpeak NG through the ``espeakng-loader`` wheel.

The wheel bundles ``libespeak-ng.so`` and its voice data, so no system
package is needed; we drive the C API through ctypes.

Authors
 * speechbrain-emosllm contributors 2026
"""

import ctypes

import numpy as np

# espeak_PARAMETER ids of speak_lib.h.
RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4
SYNCHRONOUS = 2
CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class ESpeak:
    """A synchronous eSpeak NG synthesiser (one per process).

    Example
    -------
    >>> speaker = ESpeak()
    >>> audio = speaker.synthesize("hello", voice="en-us+m3")
    >>> speaker.sample_rate, audio.dtype, len(audio) > 1000
    (22050, dtype('float32'), True)
    >>> len(speaker.synthesize("hello", voice="en-us+f2", seed=3)) > 1000
    True
    """

    _library = None

    def __init__(self):
        import espeakng_loader

        if ESpeak._library is None:
            library = ctypes.cdll.LoadLibrary(
                espeakng_loader.get_library_path()
            )
            data = espeakng_loader.get_data_path().encode()
            rate = library.espeak_Initialize(SYNCHRONOUS, 0, data, 0)
            if rate <= 0:
                raise RuntimeError("eSpeak NG failed to initialise.")
            ESpeak._library, ESpeak._rate = library, rate
        self.library, self.sample_rate = ESpeak._library, ESpeak._rate
        self._chunks = []
        # Keep a reference: ctypes callbacks must outlive their use.
        self._callback = CALLBACK(self._collect)
        self.library.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, count, _events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
        return 0

    def synthesize(
        self,
        text,
        voice="en-us",
        rate=175,
        pitch=50,
        pitch_range=50,
        volume=100,
        seed=None,
    ):
        """Synthesises ``text``; returns float32 samples in [-1, 1].

        Arguments
        ---------
        text : str
            What to say.
        voice : str
            eSpeak voice, e.g. ``"en-us+f3"``.
        rate : int
            Words per minute.
        pitch : int
            Base pitch, 0-100.
        pitch_range : int
            Pitch range (intonation), 0-100.
        volume : int
            Amplitude, 0-200.
        seed : int, optional
            Seed of eSpeak NG's own random generator (the breath noise of
            the female variants draws from it, seeded from the clock
            otherwise). Seeded, the same sequence of calls in a fresh
            process gives the same samples (the library keeps other state
            from call to call: see ``corpus.synthesize_corpus``).

        Returns
        -------
        numpy.ndarray
        """
        self.library.espeak_SetSynthCallback(self._callback)
        if self.library.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"Unknown eSpeak voice '{voice}'.")
        for parameter, value in (
            (RATE, rate),
            (VOLUME, volume),
            (PITCH, pitch),
            (RANGE, pitch_range),
        ):
            self.library.espeak_SetParameter(parameter, int(value), 0)
        if seed is not None:
            self.library.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self._chunks = []
        encoded = text.encode()
        self.library.espeak_Synth(
            encoded, len(encoded) + 1, 0, 0, 0, 0, None, None
        )
        self.library.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0
