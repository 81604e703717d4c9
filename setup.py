from setuptools import find_packages, setup

setup(
    name="oat-tf",
    version="0.1.0",
    description="Once-for-All Adversarial Training (OAT/OATS) in Keras 3 / TensorFlow, with TFLite export",
    packages=find_packages(include=["oat_tf", "oat_tf.*"]),
    package_data={"oat_tf": ["presets/*/*"]},  # the shipped pretrained models
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # tensorflow-datasets 4.9.10 imports it without declaring it
        "absl-py",
        "tensorboard",  # tf.summary needs it at run time
        "numpy",
        "matplotlib",
        "pillow",  # decodes image-folder datasets
        "ai-edge-litert",
    ],
    extras_require={"test": ["pytest"], "bench": ["ai-edge-quantizer>=0.10"]},  # bench/int8_routes.py
    entry_points={"console_scripts": ["oat-summary=oat_tf.summary:run"]},
)
