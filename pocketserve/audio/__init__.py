"""Audio: decoding uploads, resampling, streamed encoding, subtitle formats, languages."""
