"""What the handlers call: one function per endpoint, and the sync worker, trigger and reaper."""
