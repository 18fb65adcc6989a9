"""Where and how a network runs: the device's acceleration (compile, channels-last), reduced
precision with its float32 fallback, out-of-memory detection, the allocator set-up and the
cross-job batcher with its device thread."""
