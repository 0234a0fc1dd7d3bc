"""One module per file format: how a format's schema is sampled and its rows parsed.

Text formats (CSV/TSV, JSON Lines, JSON) read a sequential byte stream; Parquet reads a
seekable one. None of them knows which object source the bytes came from.
"""
