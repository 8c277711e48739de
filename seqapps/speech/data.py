"""Data specs, speaker-disjoint splits and on-the-fly augmentation for the speech app.

Specs:
    "default" / "synthetic"      keywords spoken by eSpeak NG (offline; cached under ~/.cache/seqapps/speech)
    a Speech Commands folder     ``<label>/<speaker>_nohash_<n>.wav`` (optional ``_background_noise_/``)
    any folder of labelled WAVs  sub-folder = label, or (flat folder) file-name prefix = label, e.g. FSDD
                                 ``<digit>_<speaker>_<index>.wav``; the speaker is the second field
    "tfds:speech_commands"       TensorFlow Datasets (downloads 2.4 GB when not cached; its own splits)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from pathlib import Path

import keras
import numpy as np

from seqapps.data import DATA_FIX, not_found
from seqapps.export.atomic import atomic_write_bytes
from seqapps.speech import audio
from seqapps.speech.config import SPEECH_COMMANDS_LABELS

SILENCE, UNKNOWN, NOISE_DIR = "_silence_", "_unknown_", "_background_noise_"
OTHER_WORDS = (
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "backward",
    "forward",
    "follow",
    "learn",
    "visual",
    "up",
    "yes",
    "no",
    "left",
    "right",
    "on",
    "off",
    "stop",
    "go",
    "down",
    "hello",
    "table",
    "water",
    "open",
    "close",
    "seven",
    "music",
    "window",
    "light",
    "start",
    "number",
)


@dataclasses.dataclass
class Clips:
    """1-second clips in memory: waveforms [N, 16000] float32, word (original label) and speaker per clip."""

    waveforms: np.ndarray
    words: list[str]
    speakers: list[str]
    spec: str
    noise: list[np.ndarray] = dataclasses.field(default_factory=list)  # long background recordings
    split: list[str] | None = None  # a fixed split per clip (tfds), else None

    def __len__(self):
        return len(self.words)

    def subset(self, idx):
        idx = np.asarray(idx, dtype=int)
        return Clips(
            self.waveforms[idx],
            [self.words[i] for i in idx],
            [self.speakers[i] for i in idx],
            self.spec,
            self.noise,
            None if self.split is None else [self.split[i] for i in idx],
        )


def _cache_dir() -> Path:
    return Path(os.environ.get("SEQAPPS_CACHE", Path.home() / ".cache" / "seqapps")) / "speech"


# --------------------------------------------------------------------------- folders of WAVs
_NOHASH = re.compile(r"^(?:.*_)?([0-9a-zA-Z]+)_nohash_\d+")


def speaker_of(path: Path, label: str) -> str:
    """The speaker of a clip labelled ``label``, from its file name: ``<speaker>_nohash_<n>`` (Speech
    Commands) or ``<label>_<speaker>_<n>`` (FSDD, flat or in label folders); else the clip is its own group."""
    stem = path.name.split(".")[0]
    m = _NOHASH.match(stem)
    if m:
        return m.group(1)
    fields = stem.split("_")
    if len(fields) >= 3 and fields[0] == label:
        return fields[1]  # FSDD: <digit>_<speaker>_<index>
    return "clip:" + stem  # no speaker in the name (e.g. _silence_/1024.wav): each clip is its own group


def wav_files(folder: Path) -> list[Path]:
    """The WAV files of ``folder``, sorted: any case of the suffix (.wav, .WAV, .Wav)."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.name.lower().endswith(".wav") and e.is_file())


def scan_folder(root: Path, verbose: bool = False) -> list[tuple[Path, str, str]]:
    """(path, word, speaker) for every WAV; label = sub-folder, or file-name prefix for a flat folder. With
    ``verbose``, label folders that hold no WAV file (their label gets no clips) are named."""
    root = Path(root)
    dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name != NOISE_DIR]
    files = {d: wav_files(d) for d in dirs}
    subdirs = [d for d in dirs if files[d]]
    items = []
    if subdirs:
        empty = [d.name for d in dirs if not files[d] and not d.name.startswith(".")]  # not .ipynb_checkpoints
        if empty and verbose:
            print(
                f"[speech] {root}: no .wav files in {len(empty)} label folder(s) ({', '.join(empty)}), so no clips "
                "of those labels; only WAV is read (convert others, e.g. `ffmpeg -i in.mp3 -ar 16000 -ac 1 out.wav`)"
            )
        for d in subdirs:
            for p in files[d]:
                items.append((p, d.name, speaker_of(p, d.name)))
    else:
        for p in wav_files(root):
            label = p.name.split("_")[0].split(".")[0]
            items.append((p, label, speaker_of(p, label)))
    return items


def load_folder(root, max_examples=0, seed=0, verbose=True) -> Clips:
    root = Path(root)
    if not root.is_dir():
        raise not_found(
            "speech data folder",
            root,
            "give a Speech Commands folder, a folder of labelled WAVs, 'synthetic' or 'tfds:speech_commands' "
            f"({DATA_FIX})",
        )
    items = scan_folder(root, verbose)
    if not items:
        raise ValueError(f"{root}: no .wav files found (expected <label>/<file>.wav or <label>_<speaker>_<n>.wav)")
    if max_examples and len(items) > max_examples:
        keep = np.sort(np.random.default_rng(seed).choice(len(items), max_examples, replace=False))
        items = [items[i] for i in keep]
    waves, words, speakers, bad = [], [], [], []
    for p, word, spk in items:
        try:
            x = audio.load_audio(p, max_seconds=30)
        except audio.AudioError as exc:
            bad.append(str(exc))
            continue
        waves.append(audio.fit_clip(x))
        words.append(word)
        speakers.append(spk)
    if not waves:
        raise ValueError(f"{root}: none of the {len(items)} .wav files could be read, e.g. {bad[0]}")
    if bad and verbose:
        print(f"[speech] skipped {len(bad)} unreadable file(s), e.g. {bad[0]}")
    if verbose and all(spk.startswith("clip:") for spk in speakers):
        print(
            f"[speech] {root}: no speaker in the file names (<speaker>_nohash_<n>.wav or <label>_<speaker>_<n>.wav), "
            "so every clip is its own group: one speaker's clips can fall in different splits"
        )
    noise = []
    if (root / NOISE_DIR).is_dir():
        for p in wav_files(root / NOISE_DIR):
            try:
                noise.append(audio.load_audio(p))
            except audio.AudioError as exc:
                print(f"[speech] skipped background noise file: {exc}")
    return Clips(np.stack(waves).astype(np.float32), words, speakers, str(root), noise)


# --------------------------------------------------------------------------- synthetic (eSpeak NG)
def colored_noise(n: int, rng, kind: str | None = None) -> np.ndarray:
    """White, pink or brown noise with unit RMS."""
    kind = kind or rng.choice(["white", "pink", "brown"])
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    else:
        spec = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
        spec = spec / (np.sqrt(f) if kind == "pink" else f)
        x = np.fft.irfft(spec, n)
    x = x - x.mean()
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def synthetic(words, per_word: int, unknown_words: int, silence: int, seed: int = 0, verbose=True) -> Clips:
    """Keywords spoken by eSpeak NG over random English voices/variants, rates and pitches; other words as
    `_unknown_`; generated noise as `_silence_`. Speaker = voice, so splits by speaker are splits by voice."""
    keywords = [w for w in words if not w.startswith("_")]
    others = [w for w in OTHER_WORDS if w not in keywords][:unknown_words] if UNKNOWN in words else []
    key = json.dumps([keywords, others, per_word, silence if SILENCE in words else 0, seed, 2])
    cache = _cache_dir() / f"synthetic-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if cache.is_file():
        z = np.load(cache)
        return Clips(z["waveforms"], list(z["words"]), list(z["speakers"]), "synthetic")
    rng = np.random.default_rng(seed)
    voices = audio.espeak_voices()
    waves, out_words, speakers = [], [], []
    jobs = [(w, w) for w in keywords for _ in range(per_word)]
    n_unknown = per_word if others else 0
    jobs += [(UNKNOWN, others[i % len(others)]) for i in range(n_unknown)]
    for label, text in jobs:
        voice = voices[rng.integers(len(voices))]
        x = audio.synthesize(
            text, voice, int(rng.integers(110, 230)), int(rng.integers(15, 90)), int(rng.integers(10, 90))
        )
        x = x / (np.abs(x).max() + 1e-6) * rng.uniform(0.1, 0.9)
        x = x[: audio.CLIP_SAMPLES]
        start = rng.integers(0, audio.CLIP_SAMPLES - len(x) + 1)
        clip = np.zeros(audio.CLIP_SAMPLES, np.float32)
        clip[start : start + len(x)] = x
        waves.append(clip)
        out_words.append(label)
        speakers.append(voice)
    if SILENCE in words:
        for i in range(silence or per_word):
            level = 0.0 if i % 10 == 0 else 10 ** rng.uniform(-4, -1.3)
            waves.append(colored_noise(audio.CLIP_SAMPLES, rng) * level)
            out_words.append(SILENCE)
            speakers.append(f"noise{i}")
    clips = Clips(np.stack(waves).astype(np.float32), out_words, speakers, "synthetic")
    buffer = io.BytesIO()  # a temporary file of its own, so that two runs filling the cache at once cannot collide
    np.savez_compressed(buffer, waveforms=clips.waveforms, words=np.array(out_words), speakers=np.array(speakers))
    atomic_write_bytes(cache, buffer.getbuffer())
    if verbose:
        print(f"[speech] synthesised {len(waves)} clips with eSpeak NG -> {cache}")
    return clips


# --------------------------------------------------------------------------- tfds
def load_tfds(name: str, max_examples=0) -> Clips:
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:
        raise ValueError("tfds: specs need tensorflow-datasets (pip install tensorflow-datasets)") from exc
    try:
        builder = tfds.builder(name)
        builder.download_and_prepare()
    except Exception as exc:  # noqa: BLE001 - offline/download errors of many kinds
        raise ValueError(
            f"tfds:{name} could not be loaded or downloaded ({type(exc).__name__}: {exc}); "
            "offline, use a local folder such as ../shared/data/speech/speech_commands_v0.02"
        ) from exc
    names = builder.info.features["label"].names
    waves, words, splits = [], [], []
    for split, tag in (("train", "train"), ("validation", "val"), ("test", "test")):
        for ex in builder.as_dataset(split=split).take(max_examples or -1).as_numpy_iterator():
            waves.append(audio.fit_clip(ex["audio"].astype(np.float32) / 32768.0))
            words.append(names[int(ex["label"])])
            splits.append(tag)
    return Clips(np.stack(waves), words, [f"{s}" for s in splits], f"tfds:{name}", [], splits)


# --------------------------------------------------------------------------- specs, labels, splits
def load(spec: str, cfg, label_hint=None, verbose=True) -> Clips:
    if spec in ("default", "synthetic"):
        words = label_hint or resolve_labels(cfg.labels, None)
        return synthetic(
            words, cfg.synthetic_per_word, cfg.synthetic_unknown_words, cfg.silence_clips, cfg.seed, verbose
        )
    if spec.startswith("tfds:"):
        return load_tfds(spec[5:], cfg.max_examples)
    return load_folder(spec, cfg.max_examples, cfg.seed, verbose)


def check_sources(data: str, extra_train: list[str]) -> None:
    """The splits are by speaker, and ``extra_train`` clips of a held-out speaker are dropped. Clips from
    tensorflow-datasets carry no speaker (only their split), so they cannot be kept apart from recordings of a
    folder, which may hold the same speakers or even the same files: refuse that mix before anything loads."""
    specs = [data, *extra_train]
    tfds_specs = [s for s in specs if s.startswith("tfds:")]
    folders = [s for s in specs if not s.startswith("tfds:") and s not in ("default", "synthetic")]
    if tfds_specs and folders:
        raise ValueError(
            f"data={data} with extra_train={','.join(extra_train)}: clips from {tfds_specs[0]} carry no speaker, so "
            f"the speakers held out of {folders[0]}'s training split cannot be kept out of it (or the reverse). "
            "Use the tfds spec or folders, not both (synthetic clips mix with either)"
        )


def resolve_labels(setting: str, clips: Clips | None) -> list[str]:
    """ "speech_commands": the 12 benchmark labels; "auto": those when the data has them all (or for the synthetic
    data), else the sorted words of the data; otherwise a comma-separated list."""
    if setting == "speech_commands" or (
        setting == "auto" and (clips is None or set(SPEECH_COMMANDS_LABELS) <= set(clips.words))
    ):
        return list(SPEECH_COMMANDS_LABELS)
    if setting == "auto":
        return sorted(set(clips.words))
    labels = [w.strip() for w in setting.split(",") if w.strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels: need at least two distinct labels, got {setting!r}")
    return labels


def label_ids(words, labels) -> np.ndarray:
    """Word -> label index; words outside the label set map to `_unknown_` (or -1 when there is none)."""
    index = {w: i for i, w in enumerate(labels)}
    unk = index.get(UNKNOWN, -1)
    return np.array([index.get(w, unk) for w in words], dtype=np.int32)


def _speaker_rank(speaker: str) -> float:
    return int(hashlib.sha1(speaker.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_by_speaker(clips: Clips, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """Indices of train/val/test with no speaker in two splits (stable: ranks speakers by a hash of their id)."""
    if clips.split is not None:
        tags = np.array(clips.split)
        return {k: np.flatnonzero(tags == k) for k in ("train", "val", "test")}
    speakers = sorted(set(clips.speakers), key=_speaker_rank)
    n = len(speakers)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    if n >= 3:
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
    needed = 1 + (test_fraction > 0) + (val_fraction > 0)
    if n < needed or n_test + n_val >= n:
        raise ValueError(
            f"{clips.spec}: only {n} speaker(s); cannot make speaker-disjoint train/val/test "
            f"splits (need at least {needed}); add speakers or set val_fraction/test_fraction to 0"
        )
    group = {s: ("test" if i < n_test else "val" if i < n_test + n_val else "train") for i, s in enumerate(speakers)}
    tags = np.array([group[s] for s in clips.speakers])
    return {k: np.flatnonzero(tags == k) for k in ("train", "val", "test")}


# --------------------------------------------------------------------------- augmentation
class AugmentedClips(keras.utils.PyDataset):
    """Batches of (waveform, label) with time shift, gain, background-noise mixing (recorded or generated).

    Without ``augment`` the clips are returned unchanged, in order. SpecAugment lives in the model."""

    def __init__(self, waveforms, labels, cfg, noise=(), augment=True, batch_size=64, seed=0, silence_id=-1):
        super().__init__()
        self.x, self.y, self.cfg, self.augment = waveforms, labels, cfg, augment
        self.batch_size, self.seed, self.epoch, self.silence_id = batch_size, seed, 0, silence_id
        self.noise = [n for n in noise if len(n) >= audio.CLIP_SAMPLES]
        self.order = np.arange(len(self.y))
        if augment:
            self.on_epoch_end()

    def __len__(self):
        return int(np.ceil(len(self.y) / self.batch_size))

    def on_epoch_end(self):
        if self.augment:
            self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.y))
            self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Continue as after ``epoch`` finished epochs (a resumed training): the order and the augmentation of
        the next epoch are those the uninterrupted run would have drawn."""
        if self.augment:
            self.epoch = epoch
            self.on_epoch_end()

    def _noise(self, rng):
        if self.noise and rng.random() < 0.7:
            src = self.noise[rng.integers(len(self.noise))]
            start = rng.integers(0, len(src) - audio.CLIP_SAMPLES + 1)
            seg = src[start : start + audio.CLIP_SAMPLES]
            return seg / (np.sqrt(np.mean(seg**2)) + 1e-6)
        return colored_noise(audio.CLIP_SAMPLES, rng)

    def __getitem__(self, i):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        x, y = self.x[idx].copy(), self.y[idx]
        if not self.augment:
            return x, y
        cfg = self.cfg
        rng = np.random.default_rng((self.seed, self.epoch, i))
        max_shift = int(cfg.time_shift_ms * audio.SAMPLE_RATE / 1000)
        for j in range(len(x)):
            if max_shift:
                s = int(rng.integers(-max_shift, max_shift + 1))
                x[j] = np.roll(x[j], s)
                if s > 0:
                    x[j, :s] = 0
                elif s < 0:
                    x[j, s:] = 0
            x[j] *= 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)
            if y[j] == self.silence_id and rng.random() < 0.15:  # digital or near-digital silence is silence too
                x[j] *= 0.0 if rng.random() < 0.5 else 10 ** rng.uniform(-4, -2)
                continue
            if rng.random() < cfg.noise_prob:
                rms = np.sqrt(np.mean(x[j] ** 2))
                if y[j] == self.silence_id or rms < 1e-4:
                    level = 10 ** rng.uniform(-4, -1.3)
                else:
                    level = rms / 10 ** (rng.uniform(cfg.noise_snr_db_min, cfg.noise_snr_db_max) / 20)
                x[j] += self._noise(rng) * level
        return np.clip(x, -1.0, 1.0), y
