"""Speech command recognition: raw 16 kHz waveform in, keyword out; streaming on device."""
