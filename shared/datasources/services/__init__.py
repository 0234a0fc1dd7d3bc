"""What the handlers call: one function per endpoint, plus the sync worker."""
