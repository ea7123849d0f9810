"""Audio helpers: decoding uploads to model input, subtitle formats, language names."""
