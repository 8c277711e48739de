"""Running the streaming TFLite model (``stream.tflite``) the way a device would, with `ai_edge_litert` only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqapps.export import litert

PEAK_TOLERANCE = 1.0001  # float rounding of [-1, 1] audio (and 32767/32768 scaled up) stays below this


def check_waveform(x, what: str = "waveform") -> np.ndarray:
    """``x`` as float32, refused (ValueError) when a finite sample lies outside [-1, 1] (with `PEAK_TOLERANCE`).

    The models read float32 PCM in [-1, 1]; raw int16 values (up to 32767) give confident, wrong labels rather
    than an error, so they are caught here. NaN and infinite samples pass: every model reads them as 0."""
    x = np.asarray(x, np.float32)
    if -PEAK_TOLERANCE <= x.min(initial=0.0) and x.max(initial=0.0) <= PEAK_TOLERANCE:  # fast; false with NaN
        return x
    peak = float(np.max(np.abs(x), initial=0.0, where=np.isfinite(x)))
    if peak > PEAK_TOLERANCE:
        raise ValueError(
            f"{what}: a sample of magnitude {peak:g} is outside [-1, 1]; the waveform must be float32 PCM in "
            "[-1, 1] (16 kHz): divide int16 samples by 32768 (int32 by 2147483648)"
        )
    return x


class StreamRunner:
    """One hop of audio + state -> probabilities + state, on the ``step`` signature of ``stream.tflite``."""

    def __init__(self, path, num_threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; export the speech model first")
        self.interp = litert.interpreter(path, num_threads)
        self.runner = self.interp.get_signature_runner("step")
        details = self.runner.get_input_details()
        self.hop = int(details["audio"]["shape"][-1])
        self.state_size = int(details["state"]["shape"][-1])

    def initial_state(self):
        return np.zeros((1, self.state_size), np.float32)

    def step(self, audio_hop, state):
        """One hop of float32 samples in [-1, 1] (``hop`` of them) + state -> (probabilities [L], new state).

        A shorter hop (the end of a recording whose length is not a multiple of ``hop``) is zero-padded to
        ``hop`` samples, as if silence followed; only the last hop of a recording may be short. A longer hop,
        or samples outside [-1, 1] (raw int16 values, say), raise ValueError."""
        x = check_waveform(audio_hop, "audio hop").reshape(-1)
        if x.size > self.hop:
            raise ValueError(
                f"audio hop of {x.size} samples: this model steps {self.hop} samples at a time; feed the audio in "
                f"hops of {self.hop} (the last one may be shorter)"
            )
        if x.size < self.hop:
            x = np.pad(x, (0, self.hop - x.size))
        return self._step(x, state)

    def _step(self, x, state):
        """`step` without its checks: ``x`` is ``hop`` float32 samples already checked (`run_clip`,
        `window_scores` check the whole recording once)."""
        out = self.runner(audio=x.reshape(1, self.hop), state=state)
        return out["probabilities"][0], out["state"]

    def run_clip(self, x) -> np.ndarray:
        """Probabilities after every hop of ``x`` (length a multiple of hop), from the zero state: [steps, L]."""
        x = check_waveform(x).reshape(-1)
        state, out = self.initial_state(), []
        for t in range(len(x) // self.hop):
            p, state = self._step(x[t * self.hop : (t + 1) * self.hop], state)
            out.append(p)
        return np.stack(out)


def window_scores(runner: StreamRunner, x, streams: int = 4, window_steps: int = 50, with_starts: bool = False):
    """Scores of one-second windows ending every ``window_steps / streams`` hops.

    ``streams`` recurrent states run side by side, staggered, each reset to zero at the start of its window
    (the model was trained on one-second clips from the zero state). Zeros after the recording let a window
    end at or after its last sample, so its end is scored too; a recording shorter than a window is padded
    to one, centred, as the clip model pads it. Returns (end times in samples, at most the recording's
    length; [W, L]), or with ``with_starts`` (start times in samples, ends, scores): the last window starts a
    window before its own end, which may lie past the recording's."""
    from seqapps.speech.audio import fit_clip

    if streams < 1:
        raise ValueError(f"streams={streams}: give how many staggered recurrent states to run, 1 or more (e.g. 4)")
    x = check_waveform(x).reshape(-1)
    length, window = len(x), window_steps * runner.hop
    if length <= window:
        x = fit_clip(x, window)
    else:
        x = np.pad(x, (0, -(-window_steps // streams) * runner.hop + (-length) % runner.hop))
    n_steps = len(x) // runner.hop
    offsets = [round(j * window_steps / streams) for j in range(streams)]
    states = [runner.initial_state() for _ in offsets]
    starts, ends, scores = [], [], []
    step = getattr(runner, "_step", runner.step)  # x is checked: a StreamRunner need not check every hop again

    def result():
        out = (np.array(ends), np.array(scores).reshape(len(scores), -1))
        return (np.array(starts), *out) if with_starts else out

    for t in range(n_steps):
        hop = x[t * runner.hop : (t + 1) * runner.hop]
        for j, off in enumerate(offsets):
            if t < off:
                continue
            if (t - off) % window_steps == 0:
                states[j] = runner.initial_state()
            p, states[j] = step(hop, states[j])
            if (t - off) % window_steps == window_steps - 1:
                starts.append(max(0, (t + 1) * runner.hop - window) if length > window else 0)
                ends.append(min((t + 1) * runner.hop, length))
                scores.append(p)
                if (t + 1) * runner.hop >= length:  # this window holds the last sample: nothing later to score
                    return result()
    return result()


def detect(runner, x, labels, threshold=0.6, streams=4, sample_rate=16000, window_s=1.0):
    """Keyword detections [{start, end, label, score}] (seconds): windows whose top label is a keyword with a score
    of at least ``threshold``; overlapping windows of the same label are merged (the best score is kept), and of two
    different labels whose windows overlap by more than half a window only the more confident one is kept."""
    starts, ends, scores = window_scores(
        runner, x, streams, int(round(window_s * sample_rate / runner.hop)), with_starts=True
    )
    events = []
    for start, end, p in zip(starts, ends, scores):
        k = int(np.argmax(p))
        if labels[k].startswith("_") or p[k] < threshold:
            continue
        end_s, start_s = end / sample_rate, start / sample_rate
        last = events[-1] if events else None
        if last and last["label"] == labels[k] and start_s < last["end"]:
            last["end"] = end_s
            last["score"] = max(last["score"], float(p[k]))
        elif last and last["end"] - start_s > 0.5 * window_s:  # mostly the same audio as a different label:
            if float(p[k]) > last["score"]:  # keep the more confident one
                events[-1] = {"start": round(start_s, 2), "end": end_s, "label": labels[k], "score": float(p[k])}
        else:
            events.append(
                {"start": round(start_s, 2), "end": round(end_s, 2), "label": labels[k], "score": float(p[k])}
            )
    for ev in events:
        ev["end"] = round(ev["end"], 2)
    return events
