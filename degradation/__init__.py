"""Synthetic data: how clean photos are made dark, noisy and shaken, for training and for the
evaluation sets. ``recipe`` is the frozen recipe of the evaluation sets (changing it changes
every published figure); ``night_scenes`` with ``lights`` and ``camera`` makes training scenes
whose light varies across the frame; ``shake`` draws hand shake over a night exposure for
version 3.

numpy and Pillow only, never torch; never imports the engine, the runtime or the database."""
