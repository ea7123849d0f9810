"""Audio: decoding, resampling and encoding; subtitle formats."""
