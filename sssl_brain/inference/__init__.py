"""Trained models: the model folder, exporting a fold, EmotionRecognizer and the command line."""
