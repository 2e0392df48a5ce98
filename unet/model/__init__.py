"""The network, losses and metrics: Keras 3 layers and `keras.ops` only, so any backend runs them."""
