"""Using a trained network outside training: classify images, export the network.

`Classifier` (classifier.py) wraps a run directory or published weights with the exact eval
preprocessing and the class names; `export` (export.py) writes it as a TensorFlow SavedModel, a
TFLite model or a serialized StableHLO artifact. The commands are `python -m jaxcnn.predict` and
`python -m jaxcnn.export`.
"""
