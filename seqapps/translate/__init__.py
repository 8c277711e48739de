"""Machine translation: an encoder-decoder GRU with attention, greedy and beam decoding, on device."""
