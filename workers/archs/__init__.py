"""Network architectures Darkroom runs itself, written so published checkpoints load unchanged."""
