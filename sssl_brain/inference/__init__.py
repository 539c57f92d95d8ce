"""Trained models: the model folder (export), EmotionRecognizer and the command line."""
