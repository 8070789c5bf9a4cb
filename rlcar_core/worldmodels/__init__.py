"""World Models (Ha & Schmidhuber 2018): ConvVAE (V), MDN-RNN (M), linear controller (C) with CMA-ES."""
