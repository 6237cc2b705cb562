"""ppgen.models: mirrored Pyro and NumPyro subpackages."""
