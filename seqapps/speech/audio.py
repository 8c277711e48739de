"""Audio I/O without system packages: robust WAV reading, resampling, one-second clips, eSpeak NG synthesis.

`read_wav` accepts PCM 8-bit (unsigned), 16-bit, 24-bit and 32-bit integer, and 32/64-bit IEEE float WAV
files (mono or multi-channel, mixed down), and raises `AudioError` naming the problem for anything else.
"""

from __future__ import annotations

import ctypes
import io
import math
import struct
import threading
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
MAX_SECONDS_DEFAULT = 3600.0  # refuse files longer than this (memory), override with max_seconds
# sample rates a WAV header may give (telephone 8 kHz to studio 384 kHz): anything else is a corrupt header,
# whose resampling could ask for hundreds of GiB; the SavedModel's `classify_wav` uses the same bounds
MIN_RATE, MAX_RATE = 1000, 384000


class AudioError(ValueError):
    """An audio input that cannot be used; the message names the problem and the fix."""


# --------------------------------------------------------------------------- WAV reading
def _parse_chunks(data: bytes, name: str):
    if len(data) == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes); give a WAV file (RIFF/WAVE)")
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        raise AudioError(
            f"{name}: not a WAV file (no RIFF/WAVE header; starts with {data[:4]!r}); convert it to WAV, "
            "e.g. `ffmpeg -i input -ar 16000 -ac 1 out.wav`"
        )
    if data[:4] == b"RIFX":
        raise AudioError(f"{name}: big-endian RIFX WAV is not supported; convert it to a little-endian WAV")
    pos, fmt, payload = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            payload = body  # a truncated data chunk keeps what is there
            if size == 0 and pos + 8 < len(data):  # streaming writers leave the size 0: the rest of the file
                payload = data[pos + 8 :]
                break
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise AudioError(f"{name}: corrupt WAV (no valid 'fmt ' chunk)")
    if payload is None:
        raise AudioError(f"{name}: corrupt WAV (no 'data' chunk)")
    return fmt, payload


def decode_wav(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """WAV bytes -> (float32 samples in [-1, 1], shape [frames, channels]; sample rate)."""
    fmt, payload = _parse_chunks(bytes(data), name)
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the sub-format GUID
        tag = struct.unpack("<H", fmt[24:26])[0]
    if channels == 0 or bits == 0 or not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            f"{name}: corrupt WAV header (channels={channels}, rate={rate} Hz, bits={bits}); a sample rate must "
            f"be {MIN_RATE} to {MAX_RATE} Hz"
        )
    width = bits // 8 if bits % 8 == 0 else (bits + 7) // 8
    frame = width * channels
    usable = len(payload) - len(payload) % frame
    raw = payload[:usable]
    if tag == 1:  # PCM
        if width == 1:
            x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
        elif width == 2:
            x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        elif width == 3:
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            v = np.where(v >= 1 << 23, v - (1 << 24), v)
            x = v.astype(np.float32) / float(1 << 23)
        elif width == 4:
            x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
        else:
            raise AudioError(f"{name}: unsupported PCM sample width {bits} bits; use 8, 16, 24 or 32-bit WAV")
    elif tag == 3:  # IEEE float
        if width == 4:
            x = np.frombuffer(raw, "<f4").astype(np.float32)
        elif width == 8:
            x = np.frombuffer(raw, "<f8").astype(np.float32)
        else:
            raise AudioError(f"{name}: unsupported float sample width {bits} bits; use 32 or 64-bit float WAV")
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    else:
        raise AudioError(
            f"{name}: compressed WAV (format tag {tag:#x}) is not supported; convert it to PCM, "
            "e.g. `ffmpeg -i input -acodec pcm_s16le out.wav`"
        )
    return x.reshape(-1, channels), int(rate)


def resample(x: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling (scipy) of a 1-D signal; identity when the rates match."""
    if rate_in == rate_out or x.size == 0:
        return x.astype(np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError:  # numpy only: windowed-sinc low-pass + linear interpolation (as the SavedModel does)
        ratio = rate_out / rate_in
        cutoff, t = min(1.0, ratio) * 0.95, np.arange(-32, 33)
        h = cutoff * np.sinc(cutoff * t) * (0.54 + 0.46 * np.cos(np.pi * t / 33))
        y = np.convolve(x.astype(np.float64), h / h.sum(), mode="same")
        pos = np.arange(int(np.floor(len(y) * ratio))) / ratio
        return np.interp(pos, np.arange(len(y)), y).astype(np.float32)
    g = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(x.astype(np.float64), rate_out // g, rate_in // g).astype(np.float32)


def load_audio(
    path_or_bytes, rate: int = SAMPLE_RATE, max_seconds: float = MAX_SECONDS_DEFAULT, name: str | None = None
) -> np.ndarray:
    """A WAV file (path or bytes) as mono float32 at ``rate``: channels averaged, resampled."""
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data, name = bytes(path_or_bytes), name or "<bytes>"
    else:
        p = Path(path_or_bytes)
        name = name or str(p)
        if p.is_dir():
            raise FileNotFoundError(f"{p}: a folder, not an audio file (give its WAV files: {p}/*.wav)")
        if not (p.is_file() or p.is_fifo()):  # a pipe (<(...)) reads like a file; /dev/zero would never end
            raise FileNotFoundError(f"{p}: no such audio file")
        data = p.read_bytes()
    x, sr = decode_wav(data, name)
    seconds = x.shape[0] / sr
    if seconds > max_seconds:
        raise AudioError(
            f"{name}: {seconds:.0f} s of audio is longer than the limit of {max_seconds:.0f} s; "
            "split the file or raise the limit"
        )
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return resample(mono, sr, rate)


def fit_clip(x: np.ndarray, length: int = CLIP_SAMPLES, center: bool = True) -> np.ndarray:
    """Pad with zeros (centred) or trim (around the loudest part) to exactly ``length`` samples."""
    x = np.asarray(x, np.float32).reshape(-1)
    if x.size == length:
        return x
    if x.size < length:
        left = (length - x.size) // 2 if center else 0
        return np.pad(x, (left, length - x.size - left))
    # keep the window of `length` samples with the most energy (a keyword in a longer recording)
    energy = np.convolve(x.astype(np.float64) ** 2, np.ones(length // 10), mode="same")
    hop = max(1, length // 20)
    starts = np.arange(0, x.size - length + 1, hop)
    cums = np.concatenate([[0.0], np.cumsum(energy)])
    best = starts[int(np.argmax(cums[starts + length] - cums[starts]))]
    return x[best : best + length]


def encode_wav(x: np.ndarray, rate: int = SAMPLE_RATE, bits: int = 16, channels: int = 1) -> bytes:
    """float samples -> WAV bytes (PCM 8/16/24/32-bit, or 32-bit float with ``bits=-32``); for tests and tools."""
    x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    if x.ndim == 1:
        x = np.repeat(x[:, None], channels, axis=1)
    tag, width = (3, 4) if bits == -32 else (1, bits // 8)
    if bits == 8:
        raw = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif bits == 16:
        raw = np.round(x * 32767).astype("<i2").tobytes()
    elif bits == 24:
        v = np.round(x * 8388607).astype(np.int32).reshape(-1)
        raw = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], axis=1).astype(np.uint8).tobytes()
    elif bits == 32:
        raw = np.round(x * 2147483647).astype("<i4").tobytes()
    elif bits == -32:
        raw = x.astype("<f4").tobytes()
    else:
        raise ValueError(f"bits must be 8, 16, 24, 32 or -32 (float), got {bits}")
    nch = x.shape[1]
    fmt = struct.pack("<HHIIHH", tag, nch, rate, rate * nch * width, nch * width, 8 * width)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path, x: np.ndarray, rate: int = SAMPLE_RATE, bits: int = 16) -> None:
    Path(path).write_bytes(encode_wav(x, rate, bits))


# --------------------------------------------------------------------------- eSpeak NG (ctypes)
_ESPEAK_LOCK = threading.Lock()
_ESPEAK = {}
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
ESPEAK_RATE = 22050
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


def _espeak():
    """Load libespeak-ng from the `espeakng-loader` wheel and initialise it (synchronous, to a buffer)."""
    if "lib" in _ESPEAK:
        return _ESPEAK["lib"]
    try:
        import espeakng_loader
    except ImportError as exc:
        raise RuntimeError(
            "the offline speech data needs the espeakng-loader wheel: pip install espeakng-loader"
        ) from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate})")
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    buf: list[np.ndarray] = []

    def callback(wav, n, events):
        if n > 0 and wav:
            buf.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    cb = _CALLBACK(callback)
    lib.espeak_SetSynthCallback(cb)
    _ESPEAK.update(lib=lib, cb=cb, buf=buf, rate=rate)
    return lib


def espeak_voices() -> list[str]:
    """English voices x variants available in the wheel, e.g. ``en-us+f3``."""
    import espeakng_loader

    data = Path(espeakng_loader.get_data_path())
    langs = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]
    variants = sorted(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())
    return [f"{lang}+{v}" for lang in langs for v in variants]


def synthesize(
    text: str,
    voice: str = "en-us",
    rate_wpm: int = 160,
    pitch: int = 50,
    pitch_range: int = 50,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Speak ``text`` with eSpeak NG; float32 mono at ``sample_rate`` (synthesised at 22.05 kHz, resampled)."""
    with _ESPEAK_LOCK:
        lib = _espeak()
        buf = _ESPEAK["buf"]
        buf.clear()
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"unknown eSpeak voice {voice!r}")
        lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(_RANGE, int(pitch_range), 0)
        lib.espeak_SetParameter(_VOLUME, 100, 0)
        raw = text.encode("utf-8") + b"\0"
        lib.espeak_Synth(raw, len(raw), 0, 1, 0, 0, None, None)  # POS_CHARACTER, espeakCHARS_AUTO
        lib.espeak_Synchronize()
        pcm = np.concatenate(buf) if buf else np.zeros(0, np.int16)
        buf.clear()
        sr = _ESPEAK["rate"]
    return resample(pcm.astype(np.float32) / 32768.0, sr, sample_rate)


def to_bytes_io(x: np.ndarray, rate: int = SAMPLE_RATE) -> io.BytesIO:
    return io.BytesIO(encode_wav(x, rate))
