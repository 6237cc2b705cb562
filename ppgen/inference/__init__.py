"""ppgen.inference: mirrored Pyro and NumPyro subpackages."""
