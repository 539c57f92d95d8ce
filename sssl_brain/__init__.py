"""sssl-brain: music emotion recognition with semi-supervised self-learning (SSSL).

A SpeechBrain plugin. See README.md for the layout and docs/method.md for
the method.
"""

__version__ = "0.1.0"
