"""sssl-brain: music emotion recognition with semi-supervised self-learning, as a SpeechBrain plugin."""

from setuptools import find_packages, setup

setup(
    name="sssl-brain",
    version="0.1.0",
    description="Semi-supervised self-learning music emotion recognition (SSSL) for SpeechBrain",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sssl_brain", "sssl_brain.*"]),
    install_requires=[
        "torch>=2.1",
        "torchaudio>=2.1",
        "speechbrain>=1.0,<1.2",
        "librosa>=0.10,<0.12",
        "scikit-learn>=1.3",
        "numpy>=1.24",
        "scipy>=1.10",
        "soundfile>=0.12.1",
        "matplotlib>=3.7",
        "hyperpyyaml>=1.2",
        "skops>=0.9",
        "tqdm>=4.60",
    ],
    extras_require={"dev": ["pytest>=7", "hypothesis>=6", "ruff>=0.4"]},
    entry_points={
        "console_scripts": [
            "sssl-classify=sssl_brain.inference.cli:main",
            "sssl-export=sssl_brain.inference.export:main",
        ]
    },
)
