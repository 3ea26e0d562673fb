"""The ``augret`` command line: thin wrappers over the stage APIs."""
