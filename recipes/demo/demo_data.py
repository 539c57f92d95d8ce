"""Built-in demo dataset: synthetic music-like songs whose emotion changes inside the song.

Each song is additive-synth music (melody, chord pad, bass and a noise-burst
drum kit) whose emotion is carried by the cues music psychology names:

* valence (pleasantness): mode and harmony first. High valence uses major
  keys, major-dominated chord progressions and consonant chords; low valence
  uses minor keys, minor/diminished progressions, dissonant added tones
  (tritone, minor second or major seventh over the chord root) and detuned
  (rough, beating) pads. Secondary cues: register (higher melody for high
  valence) and articulation (detached notes for high, legato for low).
* arousal (energy): tempo, onset density (notes per beat and drum density),
  loudness and brightness (how many and how strong the upper harmonics are).

Every song draws its own key, registers, instruments (six additive timbres
with different harmonic envelopes), master level, drum level and
per-quadrant cue values from overlapping ranges, so no single simple feature
gives the answer (parallel major/minor keep the song's key and timbres when
its emotion changes).

A song has a *main* quadrant (balanced over Q1..Q4 across songs) and one or
two contiguous *minority* stretches (together 10-45 % of the song, drawn
uniformly per song) in another quadrant. Transitions fall on whole seconds.
Every segment inherits the song's main label, so the minority seconds are the
noisy segment labels SSSL is designed for; ``truth/segment_truth.csv`` records
the true label of every whole second.

The cue mapping, ``QUADRANT_CUES`` (a range is drawn uniformly once per
song and quadrant; from a tuple one value is drawn; drums: probabilities):

======== ===== ========== ======== ============== ======== ======== =====================
quadrant mode  dissonance tempo    notes per beat level dB rolloff  drums busy/sparse/none
======== ===== ========== ======== ============== ======== ======== =====================
Q1 V+A+  major 0.0-0.1    100-170  1,1,2,2,4      -1..+5   2.5-9    0.65 / 0.25 / 0.1
Q2 V-A+  minor 0.4-0.7    100-170  1,1,2,2,4      -1..+5   2.5-9    0.65 / 0.25 / 0.1
Q3 V-A-  minor 0.2-0.5    60-110   0.5,1,1,2      -5..+1   1.2-5    0.1 / 0.5 / 0.4
Q4 V+A-  major 0.0-0.1    60-110   0.5,1,1,2      -5..+1   1.2-5    0.1 / 0.5 / 0.4
======== ===== ========== ======== ============== ======== ======== =====================

and by valence: melody register shift +1..+6 (high) or -6..-1 semitones
(low); articulation (sounding fraction of each melody note) 0.45-0.8 (high)
or 0.85-1.0 (low); pad detune (roughness) 0-0.3 % (high) or 0.8-2 % (low).

*dissonance* is the probability that a bar's chord gets a dissonant added
tone; *level* is added to the song's master level (itself uniform in
-10..-2 dB); *rolloff* is the harmonic decay constant (the amplitude of
harmonic h is multiplied by exp(-(h-1)/rolloff)): larger is brighter.
*busy* drums: kicks, snare on beats 2 and 4, hi-hat on eighths or
sixteenths; *sparse*: one soft kick per bar and quarter-note hi-hats.

Layout written (the generic ``annotations.csv`` dataset of docs/architecture.md, "Inputs")::

    out_dir/annotations.csv          song_id,path,valence,arousal,quadrant
    out_dir/audio/song_0001.wav      16-bit mono WAV at sample_rate
    out_dir/truth/segment_truth.csv  song_id,second,valence,arousal,quadrant
    out_dir/demo_settings.json       settings; present only once complete

``valence``/``arousal`` are the main binary labels as 1.0/0.0 (threshold 0.5).
Generation is deterministic: song ``i`` (0-based; ``song_0001`` is 0) is drawn
from ``numpy.random.default_rng(seed * 100003 + i)`` and the balanced main
quadrants from ``default_rng(seed)``, so the same seed gives byte-identical
files whatever the number of worker processes.

Command line::

    python -m demo_data OUT_DIR [--n-songs 240] [--seed 0] [--n-jobs 2] [--quiet]
"""

import argparse
import io
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf
from tqdm import tqdm

from sssl_brain.dataio.labels import CLASS_NAMES, QUADRANT_OF
from sssl_brain.utils.errors import ConfigError, DataError
from sssl_brain.utils.io_utils import atomic_write_bytes, atomic_write_csv, atomic_write_json, read_csv_dicts

GENERATOR_VERSION = 1
QUADRANTS = tuple(CLASS_NAMES["quadrant"])
VALENCE_OF = {q: v for (v, a), q in QUADRANT_OF.items()}
AROUSAL_OF = {q: a for (v, a), q in QUADRANT_OF.items()}

_HIGH_AROUSAL = {
    "tempo_bpm": (100.0, 170.0),
    "notes_per_beat": (1.0, 1.0, 2.0, 2.0, 4.0),
    "level_db": (-1.0, 5.0),
    "rolloff": (2.5, 9.0),
    "drums": {"busy": 0.65, "sparse": 0.25, "none": 0.1},
}
_LOW_AROUSAL = {
    "tempo_bpm": (60.0, 110.0),
    "notes_per_beat": (0.5, 1.0, 1.0, 2.0),
    "level_db": (-5.0, 1.0),
    "rolloff": (1.2, 5.0),
    "drums": {"busy": 0.1, "sparse": 0.5, "none": 0.4},
}
_HIGH_VALENCE = {
    "mode": "major",
    "register": (1.0, 6.0),
    "articulation": (0.45, 0.8),
    "roughness": (0.0, 0.003),
}
_LOW_VALENCE = {
    "mode": "minor",
    "register": (-6.0, -1.0),
    "articulation": (0.85, 1.0),
    "roughness": (0.008, 0.02),
}
QUADRANT_CUES = {
    "Q1": {**_HIGH_VALENCE, "dissonance": (0.0, 0.1), **_HIGH_AROUSAL},
    "Q2": {**_LOW_VALENCE, "dissonance": (0.4, 0.7), **_HIGH_AROUSAL},
    "Q3": {**_LOW_VALENCE, "dissonance": (0.2, 0.5), **_LOW_AROUSAL},
    "Q4": {**_HIGH_VALENCE, "dissonance": (0.0, 0.1), **_LOW_AROUSAL},
}

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
CHORD_INTERVALS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6)}
# Chord progressions as (root in semitones above the key, quality), one chord per bar.
PROGRESSIONS = {
    "major": (
        ((0, "maj"), (5, "maj"), (7, "maj"), (0, "maj")),  # I IV V I
        ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),  # I V vi IV
        ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),  # I vi IV V
        ((0, "maj"), (5, "maj"), (0, "maj"), (7, "maj")),  # I IV I V
    ),
    "minor": (
        ((0, "min"), (5, "min"), (7, "min"), (0, "min")),  # i iv v i
        ((0, "min"), (5, "min"), (0, "min"), (7, "maj")),  # i iv i V
        ((0, "min"), (2, "dim"), (7, "min"), (0, "min")),  # i ii° v i
        ((0, "min"), (8, "maj"), (5, "min"), (7, "min")),  # i VI iv v
    ),
}
DISSONANT_TONES = (6, 1, 11)  # tritone, minor second, major seventh above the chord root
# Additive timbres: harmonic amplitude slope (a_h = h^-slope), odd harmonics only,
# attack (s), decay time constant (s) and sustain level of the envelope.
INSTRUMENTS = {
    "piano": {"slope": 1.4, "odd": False, "attack": 0.004, "decay": 0.5, "sustain": 0.1},
    "organ": {"slope": 0.8, "odd": False, "attack": 0.015, "decay": 1.0, "sustain": 1.0},
    "strings": {"slope": 1.0, "odd": False, "attack": 0.08, "decay": 1.0, "sustain": 0.9},
    "flute": {"slope": 2.5, "odd": False, "attack": 0.05, "decay": 1.0, "sustain": 0.85},
    "clarinet": {"slope": 1.0, "odd": True, "attack": 0.03, "decay": 1.0, "sustain": 0.8},
    "pluck": {"slope": 1.2, "odd": False, "attack": 0.002, "decay": 0.25, "sustain": 0.0},
}
_TABLE_SIZE = 4096
_RELEASE_S = 0.03


def _midi_hz(note):
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def draw_song_plan(rng, main_quadrant, min_duration, max_duration):
    """Draws a song's duration and its per-second quadrants (main + minority stretches).

    The minority fraction is uniform in 10-45 % of the whole seconds (rounded,
    at least one second, at most 45 %), split into one or two contiguous
    stretches separated by main-quadrant seconds; the minority quadrant is one
    of the three other quadrants.

    Arguments
    ---------
    rng : numpy.random.Generator
        The song's generator.
    main_quadrant : str
        ``Q1``..``Q4``.
    min_duration, max_duration : float
        Range of the song duration in seconds.

    Returns
    -------
    duration : float
        Seconds (a whole number of samples is taken later).
    seconds : list of str
        Quadrant of every whole second ``0..floor(duration)-1``.

    Example
    -------
    >>> import numpy as np
    >>> dur, secs = draw_song_plan(np.random.default_rng(0), "Q1", 20, 45)
    >>> len(secs) == int(dur), secs.count("Q1") > len(secs) / 2
    (True, True)
    """
    duration = round(float(rng.uniform(min_duration, max_duration)), 2)
    n_sec = int(np.floor(duration))
    minority = QUADRANTS[(QUADRANTS.index(main_quadrant) + int(rng.integers(1, 4))) % 4]
    frac = rng.uniform(0.10, 0.45)
    n_min = int(np.clip(round(frac * n_sec), 1, max(1, int(0.45 * n_sec))))
    n_stretch = 2 if (rng.random() < 0.4 and n_min >= 2 and n_sec - n_min >= 3) else 1
    # Lengths of the minority stretches (each >= 1) and of the main gaps around them
    # (interior gaps >= 1), drawn as random compositions.
    stretch = 1 + rng.multinomial(n_min - n_stretch, rng.dirichlet(np.ones(n_stretch)))
    n_free = n_sec - n_min - (n_stretch - 1)
    gaps = rng.multinomial(n_free, rng.dirichlet(np.ones(n_stretch + 1)))
    gaps[1:-1] += 1
    seconds = []
    for k in range(n_stretch):
        seconds += [main_quadrant] * int(gaps[k]) + [minority] * int(stretch[k])
    seconds += [main_quadrant] * int(gaps[-1])
    return duration, seconds


def _draw_quadrant_params(rng, quadrant):
    cues = QUADRANT_CUES[quadrant]
    progs = PROGRESSIONS[cues["mode"]]
    return {
        "mode": cues["mode"],
        "progression": progs[int(rng.integers(len(progs)))],
        "dissonance": rng.uniform(*cues["dissonance"]),
        "tempo": rng.uniform(*cues["tempo_bpm"]),
        "notes_per_beat": float(rng.choice(cues["notes_per_beat"])),
        "level_db": rng.uniform(*cues["level_db"]),
        "rolloff": rng.uniform(*cues["rolloff"]),
        "drums": str(rng.choice(list(cues["drums"]), p=list(cues["drums"].values()))),
        "sixteenths": bool(rng.random() < 0.4),
        "rest_prob": rng.uniform(0.0, 0.25),
        "register": int(round(rng.uniform(*cues["register"]))),
        "articulation": rng.uniform(*cues["articulation"]),
        "roughness": rng.uniform(*cues["roughness"]),
    }


class _Synth:
    """Renders notes and drum hits into one float buffer (wavetable additive synthesis)."""

    def __init__(self, n_samples, sr, rng):
        self.sr = sr
        self.buf = np.zeros(n_samples, dtype=np.float64)
        self._tables = {}
        t = np.arange(int(0.35 * sr)) / sr
        noise = rng.standard_normal(t.size)
        sweep = 2 * np.pi * np.cumsum(45.0 + 90.0 * np.exp(-t / 0.03)) / sr
        self.drums = {
            "kick": np.sin(sweep) * np.exp(-t / 0.12),
            "snare": 0.6 * noise * np.exp(-t / 0.06) + 0.4 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05),
            "hat": np.diff(noise, prepend=0.0)[: int(0.08 * sr)] * np.exp(-t[: int(0.08 * sr)] / 0.015) * 0.5,
        }

    def _table(self, instrument, rolloff, freq):
        n_harm = max(1, min(40, int(0.45 * self.sr / freq)))
        key = (instrument, round(rolloff, 3), n_harm)
        if key not in self._tables:
            spec = INSTRUMENTS[instrument]
            h = np.arange(1, n_harm + 1)
            amps = h ** -spec["slope"] * np.exp(-(h - 1) / rolloff)
            if spec["odd"]:
                amps[1::2] *= 0.08
            bins = np.zeros(_TABLE_SIZE // 2 + 1, dtype=np.complex128)
            bins[h] = -0.5j * amps * _TABLE_SIZE
            self._tables[key] = np.fft.irfft(bins, n=_TABLE_SIZE) / np.sqrt(np.sum(amps**2))
        return self._tables[key]

    def note(self, t0, dur, midi, amp, instrument, rolloff, detune=0.0):
        spec = INSTRUMENTS[instrument]
        freq = _midi_hz(midi)
        i0 = int(round(t0 * self.sr))
        n = min(int((dur + _RELEASE_S) * self.sr), self.buf.size - i0)
        if n <= 0:
            return
        t = np.arange(n) / self.sr
        steps = np.arange(n) * (freq * _TABLE_SIZE / self.sr)
        idx = steps.astype(np.int64) % _TABLE_SIZE
        env = np.minimum(1.0, t / spec["attack"]) * (
            spec["sustain"] + (1.0 - spec["sustain"]) * np.exp(-t / spec["decay"])
        )
        env *= np.clip((dur + _RELEASE_S - t) / _RELEASE_S, 0.0, 1.0)
        table = self._table(instrument, rolloff, freq)
        if detune:  # a second, detuned oscillator: beating heard as roughness
            idx2 = (steps * (1 + detune)).astype(np.int64) % _TABLE_SIZE
            self.buf[i0 : i0 + n] += 0.5 * amp * env * (table[idx] + table[idx2])
        else:
            self.buf[i0 : i0 + n] += amp * env * table[idx]

    def hit(self, t0, name, amp, until):
        i0 = int(round(t0 * self.sr))
        n = min(self.drums[name].size, self.buf.size - i0, int(round((until - t0) * self.sr)))
        if n > 0:
            self.buf[i0 : i0 + n] += amp * self.drums[name][:n]


def _render_section(synth, rng, song, params, start, end):
    """Writes the music of one constant-quadrant stretch [start, end) seconds."""
    beat = 60.0 / params["tempo"]
    scale = SCALES[params["mode"]]
    gain = 10.0 ** ((song["master_db"] + params["level_db"]) / 20.0)
    key, rolloff = song["key"], params["rolloff"]
    busy = params["drums"] == "busy"
    center = song["melody_center"] + params["register"]
    mel_low, mel_high = center - 7, center + 9
    degree = int(rng.integers(0, 7))
    bar_start, bar = start, 0
    while bar_start < end - 1e-6:
        bar_end = min(bar_start + 4 * beat, end)
        root, quality = params["progression"][bar % len(params["progression"])]
        chord = [key + root + i for i in CHORD_INTERVALS[quality]]
        if rng.random() < params["dissonance"]:
            chord.append(key + root + int(rng.choice(DISSONANT_TONES)))
        for pitch in chord:  # pad
            synth.note(bar_start, bar_end - bar_start, song["pad_octave"] + pitch, 0.1 * gain,
                       song["pad"], rolloff, params["roughness"])
        # bass: the chord root once per bar (low arousal) or on every beat (high arousal)
        bass_step = beat if params["notes_per_beat"] >= 2 else 2 * beat
        t = bar_start
        while t < bar_end - 1e-6:
            synth.note(t, min(bass_step * 0.9, bar_end - t), song["bass_octave"] + key + root,
                       0.22 * gain, song["bass"], rolloff)
            t += bass_step
        # melody: a random walk over the scale, chord tones favoured on beats
        step = beat / params["notes_per_beat"]
        n_steps = int(np.ceil((bar_end - bar_start) / step - 1e-6))
        for k in range(n_steps):
            t = bar_start + k * step
            if rng.random() < params["rest_prob"]:
                continue
            degree += int(rng.choice((-2, -1, -1, 0, 1, 1, 2)))
            pitch = song["melody_octave"] + params["register"] + key + scale[degree % 7] + 12 * (degree // 7)
            on_beat = (k / params["notes_per_beat"]) % 1.0 == 0.0
            if on_beat and rng.random() < 0.8:
                pitch = min((p + 12 * o for p in chord[:3] for o in range(3, 8)),
                            key=lambda p, ref=pitch: abs(p - ref))
            if not mel_low <= pitch <= mel_high:
                degree += -2 if pitch > mel_high else 2
                pitch = min(max(pitch, mel_low), mel_high)
            accent = 1.0 if on_beat else 0.75
            velocity = 0.2 * gain * accent * rng.uniform(0.7, 1.0)
            length = min(step * params["articulation"], bar_end - t)
            synth.note(t, length, pitch, velocity, song["melody"], rolloff)
        # drums: noise bursts whose density follows arousal
        if params["drums"] != "none":
            sub = beat / (4 if params["sixteenths"] else 2) if busy else beat
            n_sub = int(np.ceil((bar_end - bar_start) / sub - 1e-6))
            dg = gain * song["drum_level"] * (0.35 if busy else 0.15)
            for k in range(n_sub):
                t = bar_start + k * sub
                synth.hit(t, "hat", dg * rng.uniform(0.6, 1.0), bar_end)
            beats = int(np.ceil((bar_end - bar_start) / beat - 1e-6))
            for b in range(beats):
                t = bar_start + b * beat
                if b % 2 == 0 and (busy or b == 0):
                    synth.hit(t, "kick", dg * 2.0, bar_end)
                if busy and b % 2 == 1:
                    synth.hit(t, "snare", dg * 1.2, bar_end)
                if busy and rng.random() < 0.2:
                    synth.hit(t + beat / 2, "kick", dg * 1.5, bar_end)
        bar_start += 4 * beat
        bar += 1


def synthesize_song(rng, seconds, duration, sample_rate):
    """Renders a song from its per-second quadrant plan.

    Arguments
    ---------
    rng : numpy.random.Generator
        The song's generator (draws timbres, key, registers and cue values).
    seconds : list of str
        Quadrant of every whole second (see :func:`draw_song_plan`); the
        fraction of a second after the last whole second keeps its quadrant.
    duration : float
        Song length in seconds.
    sample_rate : int
        Samples per second.

    Returns
    -------
    numpy.ndarray
        Shape (round(duration * sample_rate),), float32 in [-1, 1].

    Example
    -------
    >>> import numpy as np
    >>> y = synthesize_song(np.random.default_rng(0), ["Q1", "Q1", "Q3"], 3.5, 8000)
    >>> y.shape, float(np.abs(y).max()) <= 1.0
    ((28000,), True)
    """
    names = sorted(INSTRUMENTS)
    song = {
        "key": int(rng.integers(0, 12)),
        "melody": names[int(rng.integers(len(names)))],
        "pad": ("organ", "strings", "flute", "clarinet")[int(rng.integers(4))],
        "bass": ("pluck", "piano", "organ")[int(rng.integers(3))],
        "melody_octave": 12 * int(rng.integers(5, 7)),
        "pad_octave": 12 * int(rng.integers(4, 6)),
        "bass_octave": 12 * int(rng.integers(2, 4)),
        "master_db": rng.uniform(-10.0, -2.0),
        "drum_level": rng.uniform(0.5, 1.5),
    }
    song["melody_center"] = song["melody_octave"] + song["key"] + 7
    params = {q: _draw_quadrant_params(rng, q) for q in QUADRANTS}
    synth = _Synth(int(round(duration * sample_rate)), sample_rate, rng)
    # Runs of equal quadrant; the last run extends to the end of the song.
    bounds = [0] + [s for s in range(1, len(seconds)) if seconds[s] != seconds[s - 1]] + [len(seconds)]
    for i in range(len(bounds) - 1):
        start, end = bounds[i], bounds[i + 1]
        _render_section(synth, rng, song, params[seconds[start]], float(start),
                        duration if i == len(bounds) - 2 else float(end))
    return np.tanh(1.5 * synth.buf).astype(np.float32)


def _generate_one(args):
    """Worker: draws, renders and writes one song; returns its CSV rows."""
    index, main_quadrant, settings, audio_path = args
    rng = np.random.default_rng(settings["seed"] * 100003 + index)
    duration, seconds = draw_song_plan(rng, main_quadrant, settings["min_duration"], settings["max_duration"])
    y = synthesize_song(rng, seconds, duration, settings["sample_rate"])
    buf = io.BytesIO()
    sf.write(buf, y, settings["sample_rate"], format="WAV", subtype="PCM_16")
    atomic_write_bytes(audio_path, buf.getvalue())
    return index, duration, seconds


def _song_id(index, n_songs):
    return f"song_{index + 1:0{max(4, len(str(n_songs)))}d}"


def _check_settings(n_songs, seed, sample_rate, min_duration, max_duration):
    if int(n_songs) != n_songs or n_songs < 4:
        raise ConfigError(f"n_songs={n_songs!r}: need an integer >= 4 (one song per quadrant at least)")
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed={seed!r}: need a non-negative integer")
    if int(sample_rate) != sample_rate or sample_rate < 8000:
        raise ConfigError(f"sample_rate={sample_rate!r}: need an integer >= 8000")
    if not 4 <= min_duration <= max_duration:
        raise ConfigError(
            f"min_duration={min_duration!r}, max_duration={max_duration!r}: "
            "need 4 <= min_duration <= max_duration"
        )


def _is_complete(out_dir, settings):
    settings_path = os.path.join(out_dir, "demo_settings.json")
    try:
        with open(settings_path, encoding="utf-8") as f:
            old = json.load(f)
        rows = read_csv_dicts(os.path.join(out_dir, "annotations.csv"))
    except (OSError, ValueError):
        return False
    if old != settings or len(rows) != settings["n_songs"]:
        return False
    if not os.path.isfile(os.path.join(out_dir, "truth", "segment_truth.csv")):
        return False
    return all(os.path.isfile(os.path.join(out_dir, r["path"])) for r in rows)


def generate_demo_dataset(out_dir, n_songs=240, seed=0, sample_rate=22050, min_duration=20, max_duration=45,
                          n_jobs=2, progress=True):
    """Generates the built-in demo dataset (see the module docstring) into ``out_dir``.

    If ``out_dir`` already holds a complete demo dataset made with the same
    settings (``demo_settings.json``), nothing is regenerated.

    Arguments
    ---------
    out_dir : str
        Output folder (created if needed).
    n_songs : int
        Number of songs (main quadrants balanced: each quadrant gets
        ``n_songs // 4`` or one more).
    seed : int
        Seed; the same seed gives byte-identical files.
    sample_rate : int
        Sample rate of the WAV files.
    min_duration, max_duration : float
        Range of the song durations in seconds (uniform per song).
    n_jobs : int
        Worker processes (1: in this process; -1: all cores).
    progress : bool
        Show a tqdm progress bar and print the summary.

    Returns
    -------
    str
        Path of ``annotations.csv``.

    Raises
    ------
    ConfigError
        On a bad setting.
    DataError
        If ``out_dir`` holds an ``annotations.csv`` that the generator did not write.
    """
    _check_settings(n_songs, seed, sample_rate, min_duration, max_duration)
    settings = {
        "generator_version": GENERATOR_VERSION,
        "n_songs": int(n_songs),
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "min_duration": float(min_duration),
        "max_duration": float(max_duration),
    }
    out_dir = os.path.abspath(out_dir)
    ann_path = os.path.join(out_dir, "annotations.csv")
    settings_path = os.path.join(out_dir, "demo_settings.json")
    if _is_complete(out_dir, settings):
        if progress:
            print(f"Demo dataset already complete in {out_dir} (same settings): skipped.")
        return ann_path
    if os.path.exists(ann_path) and not os.path.exists(settings_path):
        raise DataError(
            f"{ann_path}: exists and was not written by the demo generator (no demo_settings.json); "
            "choose another folder"
        )
    if os.path.exists(settings_path):
        os.unlink(settings_path)  # the folder is incomplete until the new settings land
    os.makedirs(os.path.join(out_dir, "audio"), exist_ok=True)

    order = np.random.default_rng(int(seed)).permutation(int(n_songs))
    main = [QUADRANTS[order[i] % 4] for i in range(int(n_songs))]
    ids = [_song_id(i, n_songs) for i in range(int(n_songs))]
    audio = [os.path.join(out_dir, "audio", song_id + ".wav") for song_id in ids]
    jobs = [(i, main[i], settings, audio[i]) for i in range(int(n_songs))]
    n_workers = os.cpu_count() if n_jobs == -1 else max(1, int(n_jobs))
    results = [None] * int(n_songs)
    bar = tqdm(total=len(jobs), desc="demo songs", unit="song", disable=not progress)
    if n_workers == 1:
        for job in jobs:
            index, duration, seconds = _generate_one(job)
            results[index] = (duration, seconds)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            for index, duration, seconds in pool.map(_generate_one, jobs, chunksize=1):
                results[index] = (duration, seconds)
                bar.update()
    bar.close()

    songs, truth = [], []
    for i, (_duration, seconds) in enumerate(results):
        q = main[i]
        songs.append({"song_id": ids[i], "path": f"audio/{ids[i]}.wav", "valence": f"{VALENCE_OF[q]:.1f}",
                      "arousal": f"{AROUSAL_OF[q]:.1f}", "quadrant": q})
        for sec, qs in enumerate(seconds):
            truth.append({"song_id": ids[i], "second": sec, "valence": VALENCE_OF[qs],
                          "arousal": AROUSAL_OF[qs], "quadrant": qs})
    atomic_write_csv(os.path.join(out_dir, "truth", "segment_truth.csv"), truth,
                     ["song_id", "second", "valence", "arousal", "quadrant"])
    atomic_write_csv(ann_path, songs, ["song_id", "path", "valence", "arousal", "quadrant"])
    atomic_write_json(settings_path, settings)
    if progress:
        print(format_summary(dataset_summary(out_dir)))
    return ann_path


def dataset_summary(out_dir):
    """Counts and label-noise rates of a demo dataset (any folder with truth).

    The label-noise rate of a target is the fraction of a song's whole seconds
    whose true label differs from the song label, averaged over songs.

    Arguments
    ---------
    out_dir : str
        Folder with ``annotations.csv`` and ``truth/segment_truth.csv``.

    Returns
    -------
    dict
        ``n_songs``, ``songs_per_quadrant``, ``total_duration_s`` (whole seconds
        of truth) and ``noise_rate`` (per target).
    """
    songs = {r["song_id"]: r for r in read_csv_dicts(os.path.join(out_dir, "annotations.csv"))}
    truth = read_csv_dicts(os.path.join(out_dir, "truth", "segment_truth.csv"))
    per_song = {}
    for row in truth:
        if row["song_id"] not in songs:
            raise DataError(
                f"{out_dir}/truth/segment_truth.csv: song {row['song_id']!r} is not in annotations.csv"
            )
        song = songs[row["song_id"]]
        flips = (
            float(row["valence"]) != float(song["valence"]),
            float(row["arousal"]) != float(song["arousal"]),
            row["quadrant"] != song["quadrant"],
        )
        per_song.setdefault(row["song_id"], []).append(flips)
    noise = np.mean([np.mean(v, axis=0) for v in per_song.values()], axis=0)
    return {
        "n_songs": len(songs),
        "songs_per_quadrant": {q: sum(r["quadrant"] == q for r in songs.values()) for q in QUADRANTS},
        "total_duration_s": len(truth),
        "noise_rate": {"valence": float(noise[0]), "arousal": float(noise[1]), "quadrant": float(noise[2])},
    }


def format_summary(summary):
    """Human-readable text of :func:`dataset_summary`.

    Example
    -------
    >>> s = {"n_songs": 4, "songs_per_quadrant": {"Q1": 1, "Q2": 1, "Q3": 1, "Q4": 1},
    ...      "total_duration_s": 120, "noise_rate": {"valence": 0.1, "arousal": 0.2, "quadrant": 0.3}}
    >>> print(format_summary(s))
    Demo dataset: 4 songs (Q1 1, Q2 1, Q3 1, Q4 1), 120 s (2.0 min) of whole seconds
    Label-noise rate (seconds whose label differs from the song label, mean over songs): \
valence 10.0%, arousal 20.0%, quadrant 30.0%
    """
    quads = ", ".join(f"{q} {n}" for q, n in summary["songs_per_quadrant"].items())
    noise = ", ".join(f"{t} {100 * r:.1f}%" for t, r in summary["noise_rate"].items())
    total = summary["total_duration_s"]
    return (
        f"Demo dataset: {summary['n_songs']} songs ({quads}), "
        f"{total} s ({total / 60:.1f} min) of whole seconds\n"
        f"Label-noise rate (seconds whose label differs from the song label, mean over songs): {noise}"
    )


def main(argv=None):
    """Command-line entry point: ``python -m demo_data OUT_DIR``."""
    parser = argparse.ArgumentParser(
        description="Generate the built-in demo dataset (synthetic songs with emotion changes)."
    )
    parser.add_argument("out_dir")
    parser.add_argument("--n-songs", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--min-duration", type=float, default=20.0)
    parser.add_argument("--max-duration", type=float, default=45.0)
    parser.add_argument("--n-jobs", type=int, default=2, help="worker processes (-1: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = generate_demo_dataset(
            args.out_dir, n_songs=args.n_songs, seed=args.seed, sample_rate=args.sample_rate,
            min_duration=args.min_duration, max_duration=args.max_duration, n_jobs=args.n_jobs,
            progress=not args.quiet,
        )
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
