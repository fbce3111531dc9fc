"""ShapeEval: render a fixed prompt set with a model family and read the images back."""
