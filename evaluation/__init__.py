"""Scoring restorations: the reference sets with PSNR/SSIM (``reference_sets``), real dim photos
without references (``real_dim``) and their contact sheets (``contact_sheet``), and the
classical baseline they are compared with.

It scores a callable (pixels in, pixels out) and never imports the engine: the CLI composes a
loaded model with these. No torch."""
