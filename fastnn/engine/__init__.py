"""The engine: Network, training loop and policies, parameter layout, inputs,
model files, argument checks, the operation registry and the NumPy backend."""
