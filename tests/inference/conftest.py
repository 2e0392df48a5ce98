import os

# Keep TensorFlow's C++ start-up chatter out of the test output (must precede its import).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
